"""CachedReader: tiers and TTLs, bounds, single-flight around Valkey+loader, errors, Valkey killed."""

import asyncio

import pytest

from onair.cache import CachedReader, NearCache
from onair.testing import ServerControl

from .helpers import Db, Stack, wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_ttl_on_both_tiers(stack: Stack) -> None:
    clock = Clock()
    db = Db()
    reader = await stack.reader(near=NearCache(ttl_s=30, clock=clock), ttl_s=120)
    key = reader.client.key("ttl")
    db.rows[key] = 1
    assert await reader.get(key, db.loader(key)) == {"v": 1}
    ttl = await reader.client.raw.ttl(key)
    assert 100 < ttl <= 120  # Valkey tier
    assert await reader.get(key, db.loader(key)) == {"v": 1}  # now tracked and near
    assert key in reader.near
    calls = reader.valkey_calls
    clock.now += 29
    assert await reader.get(key, db.loader(key)) == {"v": 1}
    assert reader.valkey_calls == calls
    clock.now += 2  # past the near TTL: read from Valkey again, no loader
    assert await reader.get(key, db.loader(key)) == {"v": 1}
    assert reader.valkey_calls == calls + 1
    assert db.loads == 1
    assert reader.near.expirations == 1


async def test_near_bounds_hold_through_the_reader(stack: Stack) -> None:
    db = Db()
    near = NearCache(max_entries=5, max_bytes=5 * (NearCache.ENTRY_OVERHEAD + 40), ttl_s=60)
    reader = await stack.reader(near=near)
    keys = [reader.client.key("b", i) for i in range(12)]
    for k in keys:
        db.rows[k] = 7
        await reader.get(k, db.loader(k))  # loader + fill
        # tracked read -> near; the invalidation of our own fill may land during the first such
        # read (its fill is then not stored), so read until the key is held
        for _ in range(100):
            await reader.get(k, db.loader(k))
            if k in near:
                break
            await asyncio.sleep(0.001)
        assert k in near
    assert len(near) <= 5
    assert near.bytes <= near.max_bytes
    assert near.evictions >= 7
    big = reader.client.key("big")
    await reader.client.raw.set(big, reader.codec.encode("x" * 500))
    assert await reader.get(big) == "x" * 500
    assert big not in near  # larger than the byte bound: never stored
    assert near.bytes <= near.max_bytes


async def test_thousand_concurrent_misses_make_one_load(stack: Stack) -> None:
    reader = await stack.reader()
    key = reader.client.key("hot")
    gate = asyncio.Event()
    loads = 0

    async def loader() -> str:
        nonlocal loads
        loads += 1
        await gate.wait()
        return "value"

    tasks = [asyncio.create_task(reader.get(key, loader)) for _ in range(1000)]
    await wait_until(lambda: loads == 1)
    gate.set()
    assert await asyncio.gather(*tasks) == ["value"] * 1000
    assert loads == 1
    assert reader.metrics.singleflight_shared._value.get() == 1000
    assert reader.valkey_calls == 2  # one GET, one fill


async def test_loader_error_reaches_every_waiter_and_is_not_cached(stack: Stack) -> None:
    reader = await stack.reader()
    key = reader.client.key("err")
    gate = asyncio.Event()
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise LookupError("db says no")

    tasks = [asyncio.create_task(reader.get(key, failing)) for _ in range(20)]
    await wait_until(lambda: calls == 1)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, LookupError) for r in results)
    assert await reader.client.raw.get(key) is None
    assert key not in reader.near

    async def ok() -> str:
        return "fine"

    assert await reader.get(key, ok) == "fine"


async def test_cancelled_reader_does_not_cancel_the_load_for_others(stack: Stack) -> None:
    reader = await stack.reader()
    key = reader.client.key("cancel")
    gate = asyncio.Event()
    calls = 0

    async def loader() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 5

    first = asyncio.create_task(reader.get(key, loader))
    others = [asyncio.create_task(reader.get(key, loader)) for _ in range(3)]
    await wait_until(lambda: calls == 1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.set()
    assert await asyncio.gather(*others) == [5, 5, 5]
    assert calls == 1


async def test_write_commits_first_then_invalidates(stack: Stack) -> None:
    db = Db()
    reader = await stack.reader()
    other = await stack.reader()
    key = reader.client.key("w")
    db.rows[key] = 1
    assert await other.get(key, db.loader(key)) == {"v": 1}
    assert await other.get(key, db.loader(key)) == {"v": 1}
    assert key in other.near
    order: list[str] = []

    async def commit() -> str:
        order.append(f"commit, cached={await reader.client.raw.get(key) is not None}")
        db.rows[key] = 2
        return "ok"

    assert await reader.write(key, commit) == "ok"
    assert order == ["commit, cached=True"]
    await wait_until(lambda: key not in other.near)
    assert await other.get(key, db.loader(key)) == {"v": 2}
    assert await reader.write(key, commit, value={"v": 2}) == "ok"
    assert await other.get(key, db.loader(key)) == {"v": 2}


@pytest.mark.slow
async def test_valkey_killed_mid_run_serves_no_stale_value_and_recovers(
    stack: Stack, servers: ServerControl
) -> None:
    db = Db()
    tracker = await stack.tracker(ping_interval_s=0.2, ping_timeout_s=0.5)
    reader: CachedReader = await stack.reader(tracker, retry_after_s=0.1)
    key = reader.client.key("kill")
    db.rows[key] = 1
    assert await reader.get(key, db.loader(key)) == {"v": 1}
    assert await reader.get(key, db.loader(key)) == {"v": 1}
    assert key in reader.near

    servers.stop("valkey", hard=True)
    await wait_until(lambda: not tracker.ready)
    assert len(reader.near) == 0  # flushed: nothing it cannot vouch for
    db.rows[key] = 2  # committed while Valkey is down (its cache step cannot run)

    loads = db.loads
    for _ in range(5):
        assert await reader.get(key, db.loader(key)) == {"v": 2}
    assert db.loads == loads + 5  # answered by the database every time, never from memory
    assert len(reader.near) == 0

    gate = asyncio.Event()
    gated_loads = 0

    async def gated() -> dict[str, int]:
        nonlocal gated_loads
        gated_loads += 1
        await gate.wait()
        return {"v": db.rows[key]}

    tasks = [asyncio.create_task(reader.get(key, gated)) for _ in range(50)]
    await wait_until(lambda: gated_loads == 1)
    gate.set()
    assert await asyncio.gather(*tasks) == [{"v": 2}] * 50
    assert gated_loads == 1  # single-flight still protects the database

    await asyncio.to_thread(servers.start, "valkey")
    await wait_until(lambda: tracker.ready, timeout_s=20)
    db.rows[key] = 3
    await asyncio.sleep(reader.retry_after_s)  # let the breaker close (no event to await)
    assert await reader.get(key, db.loader(key)) == {"v": 3}  # restarted Valkey is empty: loader
    assert await reader.get(key, db.loader(key)) == {"v": 3}  # Valkey, tracked again
    assert key in reader.near
    loads = db.loads
    assert await reader.get(key, db.loader(key)) == {"v": 3}
    assert db.loads == loads  # near cache serves again


async def test_metrics_are_exported_per_reader(stack: Stack) -> None:
    from prometheus_client import CollectorRegistry

    db = Db()
    registry = CollectorRegistry()
    tracker = await stack.tracker()
    reader = CachedReader(tracker.client, tracker, registry=registry, name="items")
    second = CachedReader(tracker.client, tracker, registry=registry, name="other")  # same registry: fine
    stack.exits.callback(reader.close)
    stack.exits.callback(second.close)
    key = reader.client.key("m")
    db.rows[key] = 1
    for _ in range(4):
        await reader.get(key, db.loader(key))

    def value(name: str) -> float:
        got = registry.get_sample_value(f"onair_cache_{name}_total", {"cache": "items"})
        return -1.0 if got is None else got

    assert value("loader_calls") == 1
    assert value("near_misses") == 2  # loader read, then the tracked Valkey read
    assert value("near_hits") == 2
    assert value("valkey_calls") == 3  # GET, fill SET, GET
    await reader.publish(key, {"v": 2})
    await wait_until(lambda: value("invalidations") >= 1)
