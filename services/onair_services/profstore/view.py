"""The human view: top functions and an icicle flame graph of a merged profile, as one HTML page.

Rendered on the server with absolutely positioned boxes and CSS only: no script, no CDN.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from html import escape

from onair.pgo import _samples, pprof

MIN_WIDTH = 0.001  # boxes narrower than 0.1% of the total are not drawn
MAX_BOXES = 4000
ROW_PX = 18


@dataclass
class Node:
    name: str
    value: int = 0
    children: dict[str, Node] = field(default_factory=dict)


def build_tree(ns: pprof.NameStacks) -> Node:
    """The call tree of the name stacks, cut where nothing below can be drawn (boxes narrower than
    ``MIN_WIDTH``): see :func:`_samples.call_tree`."""
    threshold = MIN_WIDTH * abs(int(ns.values.sum()))
    parent, name, value = _samples.call_tree(
        ns.frames, ns.offsets, ns.values, len(ns.names), threshold
    ).tolist()
    nodes = [Node("all", value[0])]
    for p, n, v in zip(parent[1:], name[1:], value[1:], strict=True):
        node = nodes[p].children[ns.names[n]] = Node(ns.names[n], v)
        nodes.append(node)
    return nodes[0]


def _color(name: str) -> str:
    h = int(hashlib.blake2s(name.encode(), digest_size=2).hexdigest(), 16)
    return f"hsl({10 + h % 45},{70 + h % 20}%,{55 + (h >> 8) % 15}%)"


def flame_boxes(root: Node) -> list[tuple[int, float, float, Node]]:
    """(depth, left fraction, width fraction, node), breadth first, widest first, capped."""
    if root.value <= 0:
        return []
    out: list[tuple[int, float, float, Node]] = []
    level: list[tuple[float, Node]] = [(0.0, root)]
    depth = 0
    while level and len(out) < MAX_BOXES:
        nxt: list[tuple[float, Node]] = []
        for left, node in level:
            width = node.value / root.value
            if width < MIN_WIDTH:
                continue
            out.append((depth, left, width, node))
            x = left
            for child in sorted(node.children.values(), key=lambda c: c.name):
                nxt.append((x, child))
                x += child.value / root.value
        level = nxt
        depth += 1
    return out[:MAX_BOXES]


def render(app: str, profile: pprof.RawProfile, *, n_profiles: int, top: int = 30) -> str:
    index = pprof.sample_index(profile.header)
    stype, unit = pprof.sample_types(profile.header)[index]
    ns = pprof.name_stacks(profile, index)
    tops = pprof.top_of(pprof.totals_of(ns), top)
    root = build_tree(ns)
    total = root.value or 1
    rows = "".join(
        f"<tr><td class=n>{escape(s.name)}</td><td>{s.flat:,}</td><td>{100 * s.flat / total:.1f}%</td>"
        f"<td>{s.cum:,}</td><td>{100 * s.cum / total:.1f}%</td></tr>"
        for s in tops
    )
    boxes = flame_boxes(root)
    height = (max((d for d, *_ in boxes), default=0) + 1) * ROW_PX
    divs = "".join(
        f'<div class=b style="left:{100 * left:.4f}%;width:{100 * width:.4f}%;top:{d * ROW_PX}px;'
        f'background:{_color(node.name)}" title="{escape(node.name)} — {node.value:,} {escape(unit)} '
        f'({100 * width:.2f}%)">{escape(node.name)}</div>'
        for d, left, width, node in boxes
    )
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>{escape(app)} — merged profile</title>
<style>
body{{font:14px system-ui,sans-serif;margin:1.5em;color:#222}}
table{{border-collapse:collapse;margin-bottom:1.5em}}td,th{{padding:2px 10px;text-align:right}}
td.n,th.n{{text-align:left;font-family:monospace}}tr:nth-child(even){{background:#f4f4f4}}
.flame{{position:relative;width:100%;height:{height}px;overflow:hidden;border:1px solid #ccc}}
.b{{position:absolute;height:{ROW_PX - 1}px;box-sizing:border-box;border-right:1px solid #fff;
white-space:nowrap;overflow:hidden;font:11px/17px monospace;padding-left:2px}}
.b:hover{{outline:1px solid #000;z-index:1}}
</style></head><body>
<h1>{escape(app)}</h1>
<p>Merged from {n_profiles} profile(s); sample type <b>{escape(stype)}</b> ({escape(unit)});
total {root.value:,}. Download: <a href="merged">default.pgo</a>.</p>
<h2>Top functions</h2>
<table><tr><th class=n>function</th><th>flat</th><th>flat%</th><th>cum</th><th>cum%</th></tr>{rows}</table>
<h2>Flame graph (icicle: callers on top)</h2>
<div class=flame>{divs}</div>
</body></html>
"""


def render_index(apps: list[str]) -> str:
    items = "".join(f'<li><a href="/v1/profiles/{escape(a)}/view">{escape(a)}</a></li>' for a in apps)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>profstore</title></head>"
        "<body style='font:14px system-ui,sans-serif'><h1>profstore</h1>"
        f"<ul>{items or '<li>no profiles yet</li>'}"
        "</ul></body></html>"
    )
