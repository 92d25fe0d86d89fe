"""onair.ratelimit.SharedRateLimiter on a real Valkey: one limit for several replicas, local
decisions, one command per sync, and what happens between syncs and without Valkey."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from onair.clients import ValkeyClient
from onair.ratelimit import Policy, SharedRateLimiter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def valkey(valkey_url: str) -> AsyncIterator[ValkeyClient]:
    async with ValkeyClient(valkey_url, namespace=f"rl{uuid.uuid4().hex[:8]}") as client:
        yield client


def limiters(valkey: ValkeyClient, clock: Clock, n: int = 2, limit: int = 10) -> list[SharedRateLimiter]:
    return [SharedRateLimiter(valkey, [Policy("user", limit, 60)], clock=clock) for _ in range(n)]


async def commands(valkey: ValkeyClient) -> dict[str, int]:
    stats = await valkey.raw.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info"}


async def test_replicas_share_one_limit_through_syncs(valkey: ValkeyClient) -> None:
    clock = Clock(6000.0)  # the start of a window: no previous window in play
    a, b = limiters(valkey, clock)
    assert all([(await a.hit("user", "u1")).allowed for _ in range(6)])
    await a.sync()
    await b.sync()  # b has not seen u1 yet: nothing to refresh
    assert all([(await b.hit("user", "u1")).allowed for _ in range(2)])
    await b.sync()  # b learns of a's 6
    assert [(await b.hit("user", "u1")).allowed for _ in range(3)] == [True, True, False]
    await b.sync()
    clock.now += 1  # a has not seen u1 since its sync: its totals are stale, and u1 is near the limit
    refused = await a.hit("user", "u1")
    assert not refused.allowed and refused.remaining == 0
    assert refused.retry_after_s >= 1
    assert refused.header.startswith('"user";r=0;t=')


async def test_between_syncs_each_replica_decides_alone(valkey: ValkeyClient) -> None:
    """The documented price of local decisions: without a sync, N replicas admit up to N x limit."""
    clock = Clock(12000.0)
    a, b = limiters(valkey, clock, limit=5)
    admitted = [(await r.hit("user", "burst")).allowed for r in (a, b) for _ in range(7)]
    assert admitted.count(True) == 10  # 5 each
    await a.sync()
    await b.sync()
    await a.sync()
    assert not (await a.hit("user", "burst")).allowed
    assert not (await b.hit("user", "burst")).allowed


async def test_a_stale_replica_near_the_limit_asks_valkey_first(valkey: ValkeyClient) -> None:
    clock = Clock(18000.0)
    a, b = limiters(valkey, clock)
    for _ in range(5):
        assert (await a.hit("user", "quiet")).allowed
    await a.sync()  # a knows 5 of 10
    for _ in range(5):
        assert (await b.hit("user", "quiet")).allowed
    await b.sync()  # b's hits are in Valkey; a has not seen the key since
    clock.now += 1.0  # a's totals are stale now
    assert not (await a.hit("user", "quiet")).allowed  # 5 + 1 > half the limit: refreshed first
    assert a.refreshes == 1


async def test_keys_far_from_their_limit_cost_one_command_a_second(valkey: ValkeyClient) -> None:
    clock = Clock(24000.0)
    limiter = SharedRateLimiter(
        valkey, [Policy("ip", 1_000_000, 60), Policy("user", 1_000_000, 60)], clock=clock
    )
    await limiter.hit("user", "warm")
    await limiter.sync()  # loads the script
    before = await commands(valkey)
    for _ in range(10):  # one second of traffic, 10 sync rounds
        clock.now += 0.1
        for i in range(500):
            await limiter.hit("ip", f"10.0.0.{i % 50}")
            await limiter.hit("user", f"u{i % 20}")
        await limiter.sync()
    after = await commands(valkey)
    sent = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    # 10,000 decisions: the 70 new keys' first sync (1 EVALSHA running INCRBY+PEXPIRE+GET per key)
    assert sent == {"evalsha": 1, "incrby": 70, "pexpire": 70, "get": 70}
    clock.now += 0.15  # over a second after their last sync: due again
    await limiter.hit("user", "u1")
    await limiter.sync()
    assert (await commands(valkey))["evalsha"] - before["evalsha"] == 2


async def test_a_key_near_its_limit_is_synced_every_interval(valkey: ValkeyClient) -> None:
    clock = Clock(27000.0)
    [limiter] = limiters(valkey, clock, n=1, limit=100)
    before = (await commands(valkey)).get("evalsha", 0)
    for _ in range(5):  # 20 hits per 100 ms: the rest (< 80) goes in under the 2 s horizon
        clock.now += 0.1
        for _ in range(20):
            await limiter.hit("user", "busy")
        await limiter.sync()
    assert (await commands(valkey))["evalsha"] - before == 5


async def test_the_sliding_window_counts_the_previous_window_pro_rata(valkey: ValkeyClient) -> None:
    clock = Clock(30000.0)
    [limiter] = limiters(valkey, clock, n=1, limit=10)
    for _ in range(10):
        assert (await limiter.hit("user", "slide")).allowed
    await limiter.sync()
    clock.now += 60  # next window, at its start: the previous 10 weigh fully
    assert not (await limiter.hit("user", "slide")).allowed
    clock.now += 30  # half way: they weigh 5
    assert [(await limiter.hit("user", "slide")).allowed for _ in range(6)] == [True] * 5 + [False]


async def test_without_valkey_it_keeps_deciding_locally_and_catches_up(valkey_url: str) -> None:
    dead = ValkeyClient("redis://127.0.0.1:1/0", namespace="x", timeout_s=0.2)
    await dead.start()
    try:
        clock = Clock(36000.0)
        limiter = SharedRateLimiter(dead, [Policy("user", 3, 60)], clock=clock)
        assert [(await limiter.hit("user", "u")).allowed for _ in range(4)] == [True, True, True, False]
        await limiter.sync()
        assert limiter.sync_failures >= 1
        assert not (await limiter.hit("user", "u")).allowed  # the unsynced hits still count
    finally:
        await dead.close()


def test_policy_header_and_validation() -> None:
    assert Policy("ip", 100, 60).header == '"ip";q=100;w=60'
    with pytest.raises(ValueError):
        Policy("ip", 10, 0)
