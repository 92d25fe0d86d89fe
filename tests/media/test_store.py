"""media's SQL rules on SQLite and PostgreSQL: one live session, one closer, leases, the counter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from onair.db import create_engine, migrate, session_factory
from onair_services.media.ladder import Source, ladder
from onair_services.media.store import AlreadyLive, MediaStore, now_ms

SOURCE = Source().model_dump()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[MediaStore]:
    engine = create_engine(database_url)
    await migrate(engine, "onair_services.media:migrations")
    try:
        yield MediaStore(session_factory(engine))
    finally:
        await engine.dispose()


async def _open(
    store: MediaStore, channel: str, sid: str, *, instance: str = "a", lease_ms: int = 60_000
) -> int:
    t = await store.open(
        channel, sid, instance=instance, kind="encoder", source=SOURCE, renditions=[], lease_ms=lease_ms
    )
    return t.seq


async def test_one_live_session_per_channel_even_when_racing(store: MediaStore) -> None:
    results = await asyncio.gather(
        *(_open(store, "race", f"s{i}", instance=f"i{i}") for i in range(6)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, int)]
    assert winners == [1] and all(isinstance(r, AlreadyLive) for r in results if not isinstance(r, int))
    live = await store.live_session("race")
    assert live is not None and live.state == "open" and live.open_seq == 1


async def test_exactly_one_closer_and_the_counter_orders_everything(store: MediaStore) -> None:
    assert await _open(store, "ch", "s1") == 1
    closes = await asyncio.gather(
        *(store.close("s1", reason) for reason in ("encoder_closed", "stopped", "shutdown"))
    )
    won = [c for c in closes if c is not None]
    assert len(won) == 1 and won[0].seq == 2
    assert await store.live_session("ch") is None
    last = await store.last_session("ch")
    assert last is not None and last.close_reason == won[0].reason
    assert await _open(store, "ch", "s2") == 3  # the next session continues the channel's counter
    assert (await store.close("s2", "encoder_closed")) is not None
    assert (await store.close("s2", "encoder_closed")) is None


async def test_the_reaper_only_takes_expired_leases(store: MediaStore) -> None:
    await _open(store, "fresh", "f1", lease_ms=60_000)
    await _open(store, "stale", "x1", lease_ms=1)
    await asyncio.sleep(0.01)
    assert await store.expired(now_ms()) == ["x1"]
    assert await store.close("f1", "lease_expired", expired_before_ms=now_ms()) is None  # not expired
    reaped = await asyncio.gather(
        *(store.close("x1", "lease_expired", expired_before_ms=now_ms()) for _ in range(4))
    )
    assert sum(r is not None for r in reaped) == 1  # several reapers, one winner
    # the holder learns at its next renewal that its session is gone, and why
    assert await store.renew("a", ["f1", "x1", "never"], 60_000) == {"x1": "lease_expired", "never": "gone"}


async def test_renewal_pushes_the_lease_of_the_holder_only(store: MediaStore) -> None:
    await _open(store, "held", "h1", instance="a", lease_ms=1)
    assert await store.renew("b", ["h1"], 60_000) == {}  # not b's session: untouched
    assert await store.expired(now_ms() + 1) == ["h1"]
    await store.renew("a", ["h1"], 60_000)
    assert await store.expired(now_ms()) == []


async def test_logged_seq_follows_contiguous_changes(store: MediaStore) -> None:
    await _open(store, "logs", "l1")
    assert await store.mark_logged("logs", 1)
    await store.close("l1", "encoder_closed")  # seq 2: its event never acknowledged
    await _open(store, "logs", "l2")  # seq 3
    assert not await store.mark_logged("logs", 3)
    (lagging,) = await store.lagging(now_ms() + 1, 10)
    assert (lagging.status_seq, lagging.logged_seq, lagging.live_session_id) == (3, 1, "l2")
    await store.mark_relogged("logs", 3)
    assert await store.lagging(now_ms() + 1, 10) == []


def test_the_ladder_never_goes_above_the_source() -> None:
    def names(**source: int) -> list[str]:
        return [f"{r.name}{r.fps}" for r in ladder(Source(**source))]  # type: ignore[arg-type]

    assert names(height=1080, fps=60) == ["1080p60", "720p60", "480p30", "360p30"]
    assert names(height=720, fps=30) == ["720p30", "480p30", "360p30"]
    assert names(height=900, fps=60) == ["900p60", "720p60", "480p30", "360p30"]
    assert names(height=240, fps=25) == ["240p25"]
    assert names(height=2160, fps=120)[0] == "2160p60"
    assert all(r.bitrate_kbps <= 2000 for r in ladder(Source(height=1080, fps=60, bitrate_kbps=2000)))
