"""The profstore's HTML view reads the samples as arrays: its call tree, top functions and flame
boxes equal those of a plain per-sample walk, pruning included (negative values too)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onair.pgo import pprof
from onair_services.profstore import view

from .profiles import make_profile

NAMES = ["main", "f", "g", "h", "k", "leaf"]


def naive_tree(profile: pprof.Profile, index: int) -> view.Node:
    fr = pprof.frames(profile)
    root = view.Node("all")
    for sample in profile.sample:
        value = sample.value[index]
        if not value:
            continue
        names = [n for lid in sample.location_id for n in fr.get(lid, ("?",))]
        root.value += value
        node = root
        for name in reversed(names):
            node = node.children.setdefault(name, view.Node(name))
            node.value += value
    return root


def boxes(root: view.Node) -> list[tuple[int, float, float, str, int]]:
    return [(d, round(x, 9), round(w, 9), n.name, n.value) for d, x, w, n in view.flame_boxes(root)]


stack_st = st.lists(st.sampled_from(NAMES), min_size=0, max_size=7)
sample_st = st.tuples(stack_st, st.tuples(st.integers(-5, 5), st.integers(-50, 3000)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(sample_st, max_size=40), st.sampled_from([0.001, 0.05, 0.3]))
def test_tree_and_totals_equal_a_plain_walk(samples: list, min_width: float) -> None:
    profile = make_profile([(names, list(v)) for names, v in samples])
    parsed = pprof.raw(profile)
    saved = view.MIN_WIDTH
    view.MIN_WIDTH = min_width
    try:
        assert boxes(view.build_tree(pprof.name_stacks(parsed, 1))) == boxes(naive_tree(profile, 1))
    finally:
        view.MIN_WIDTH = saved
    flat: dict[str, int] = {}
    cum: dict[str, int] = {}
    for names, (_, value) in samples:
        if names and value:
            flat[names[0]] = flat.get(names[0], 0) + value
            for name in set(names):
                cum[name] = cum.get(name, 0) + value
    want = {n: pprof.FunctionStat(n, flat.get(n, 0), c) for n, c in cum.items()}
    assert pprof.function_totals(parsed, 1) == want == pprof.function_totals(profile, 1)


def test_missing_locations_are_one_unknown_frame() -> None:
    profile = make_profile([(["f", "main"], [1, 10])])
    profile.sample.add(location_id=[999, 1], value=[2, 20])
    totals = pprof.function_totals(pprof.raw(profile), 1)
    assert totals["?"] == pprof.FunctionStat("?", 20, 20)
    assert [names for names, _ in pprof.stacks(profile, 1)] == [("f", "main"), ("?", "f")]
