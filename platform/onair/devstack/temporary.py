"""``temporary_stack``: the devstack servers a one-off job (a benchmark, a demo) needs, around it.

Starts the named servers in a throwaway folder (or in a given devstack folder, reusing whatever
already runs there), yields the stack's ``ONAIR_*`` environment, and on exit stops only what it
started, so a developer's running devstack survives a benchmark pointed at it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from onair.devstack.stack import Devstack


@contextmanager
def temporary_stack(
    servers: Sequence[str],
    *,
    root: Path | None = None,
    note: Callable[[str], None] | None = None,
) -> Iterator[dict[str, str]]:
    """Run ``servers`` for the duration of the ``with`` block; yield their ``ONAIR_*`` env.

    ``root`` is a devstack folder to reuse (default: a temporary one, removed afterwards). Raises
    :class:`~onair.devstack.DevstackError` with the server's own message if one cannot start.
    """
    with ExitStack() as cleanup:
        if root is None:
            root = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="onair-stack-")))
        stack = Devstack(root, servers=tuple(servers))
        known = {str(s["name"]): bool(s["running"]) for s in stack.status()}
        if note is not None:
            note(f"starting {', '.join(servers)} (devstack)")
        stack.up()
        started = [name for name in servers if not known.get(name, False)]
        if not known:  # a fresh stack: all of it is ours
            cleanup.callback(stack.down)
        else:
            for name in started:
                cleanup.callback(stack.stop_server, name)
        yield stack.env()
