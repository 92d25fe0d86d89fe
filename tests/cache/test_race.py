"""The stale-fill race under hypothesis-driven interleavings.

A read starts (its Valkey GET has run), then its loader, the return of its fetch, a write's
commit, the write's Valkey step and the delivery of that write's invalidation happen in every
order hypothesis picks (respecting read-before-return and commit-before-cache-step). Afterwards
neither tier may hold a value older than the write: the same reader, and a fresh reader in
another "process", must both see the new version.
"""

import asyncio
import itertools
from contextlib import AsyncExitStack
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import Stack, wait_until

READ_EVENTS = ["loader_reads_db", "loader_returns", "fetch_returns"]
WRITE_EVENTS = ["commit", "cache_step", "invalidation_delivered"]
_examples = itertools.count()


@st.composite
def interleavings(draw: st.DrawFn) -> list[str]:
    slots = draw(st.permutations(list(range(6))))
    merged = sorted(
        [(slots[i], READ_EVENTS[i]) for i in range(3)] + [(slots[3 + i], WRITE_EVENTS[i]) for i in range(3)]
    )
    reads = iter(READ_EVENTS)
    writes = iter(WRITE_EVENTS)
    # keep each side in its own order, interleaved as drawn
    return [next(reads) if name in READ_EVENTS else next(writes) for _, name in merged]


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    order=interleavings(),
    initial=st.sampled_from(["absent", "cached", "tombstone"]),
    write_mode=st.sampled_from(["publish", "invalidate"]),
)
async def test_slow_read_overtaken_by_a_write_never_leaves_a_stale_value(
    stack: Stack, order: list[str], initial: str, write_mode: str
) -> None:
    async with AsyncExitStack() as exits:
        own = Stack(stack.url, f"{stack.namespace}-{next(_examples)}", exits)
        await _scenario(own, order, initial, write_mode)


async def _scenario(stack: Stack, order: list[str], initial: str, write_mode: str) -> None:
    reader = await stack.reader()
    writer = await stack.reader()
    key = reader.client.key("race")
    barrier = reader.client.key("barrier")
    db = {"v": 0}
    if initial == "cached":
        await writer.publish(key, {"v": 0})
    elif initial == "tombstone":
        await writer.invalidate(key)
    else:
        await writer.client.raw.delete(key)
    await writer.publish(barrier, 0)
    assert await reader.get(barrier) == 0  # tracked: used to know earlier invalidations arrived

    may_read = asyncio.Event()
    may_return = asyncio.Event()
    may_finish = asyncio.Event()
    progress = asyncio.Event()
    loader_read: list[int] = []
    at_end = asyncio.Event()

    async def loader() -> dict[str, int]:
        progress.set()
        await may_read.wait()
        loader_read.append(db["v"])
        progress.set()
        await may_return.wait()
        return {"v": loader_read[-1]}

    original = reader._read_through

    async def gated_read_through(k: str, load: Any) -> tuple[Any, int]:
        result = await original(k, load)
        if k == key:
            at_end.set()
            progress.set()
            await may_finish.wait()
        return result

    reader._read_through = gated_read_through  # type: ignore[method-assign]
    task = asyncio.create_task(reader.get(key, loader))
    await progress.wait()  # the read's GET has run (it is in the loader or done reading)

    async def step() -> None:
        progress.clear()
        await asyncio.wait(
            [asyncio.ensure_future(progress.wait()), task], return_when=asyncio.FIRST_COMPLETED
        )

    barrier_version = 0
    for event in order:
        if event == "loader_reads_db":
            may_read.set()
            if not at_end.is_set():
                await step()
        elif event == "loader_returns":
            may_return.set()
            if not at_end.is_set():
                await step()
        elif event == "fetch_returns":
            may_read.set()
            may_return.set()
            await at_end.wait()
            may_finish.set()
            await task
        elif event == "commit":
            db["v"] = 1
        elif event == "cache_step":
            if write_mode == "publish":
                await writer.publish(key, {"v": db["v"]})
            else:
                await writer.invalidate(key)
        elif event == "invalidation_delivered":
            barrier_version += 1
            await writer.publish(barrier, barrier_version)
            await wait_until(lambda: barrier not in reader.near)
            assert await reader.get(barrier) == barrier_version

    result = await task
    assert result in ({"v": 0}, {"v": 1})

    async def fresh_loader() -> dict[str, int]:
        return {"v": db["v"]}

    # Everything the write announced has arrived (the last barrier): no tier may answer v0.
    await writer.publish(barrier, -1)
    await wait_until(lambda: barrier not in reader.near)
    reader._read_through = original  # type: ignore[method-assign]
    assert await reader.get(key, fresh_loader) == {"v": 1}
    assert await reader.get(key, fresh_loader) == {"v": 1}
    other = await stack.reader()
    assert await other.get(key, fresh_loader) == {"v": 1}
