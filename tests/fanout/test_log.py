"""FanoutLog: order, no loss inside the window, exact gaps, join/leave, cancellation, close, bounds."""

from __future__ import annotations

import asyncio
import gc
import random
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onair.fanout import FanoutLog, Gap, LogClosed, Subscription


async def collect(sub: Subscription[int], n: int) -> list[int | Gap]:
    out: list[int | Gap] = []
    async for item in sub:
        out.append(item)
        if len(out) == n:
            break
    return out


async def test_each_subscriber_gets_every_entry_in_order() -> None:
    log: FanoutLog[int] = FanoutLog(capacity=64)
    subs = [log.subscribe() for _ in range(50)]
    readers = [asyncio.create_task(collect(s, 1000)) for s in subs]
    for i in range(1000):
        log.publish(i)
        if i % 32 == 31:
            await asyncio.sleep(0)
    results = await asyncio.wait_for(asyncio.gather(*readers), 10)
    for got in results:
        assert got == list(range(1000))
    assert all(s.gaps == 0 and s.missed == 0 for s in subs)


async def test_no_loss_inside_the_window_even_when_writer_bursts_the_whole_capacity() -> None:
    log: FanoutLog[int] = FanoutLog(capacity=100)
    subs = [log.subscribe() for _ in range(20)]
    readers = [asyncio.create_task(collect(s, 5000)) for s in subs]
    await asyncio.sleep(0)
    for i in range(5000):
        log.publish(i)
        if i % 100 == 99:  # exactly one window per burst: the readers catch up in between
            await asyncio.sleep(0)
    for got in await asyncio.wait_for(asyncio.gather(*readers), 10):
        assert got == list(range(5000))


async def test_a_reader_behind_the_window_gets_the_exact_missed_count_then_resumes_at_the_tail() -> None:
    log: FanoutLog[int] = FanoutLog(capacity=10)
    sub = log.subscribe()
    for i in range(25):
        log.publish(i)
    assert log.tail == 15 and len(log) == 10
    got = await collect(sub, 11)
    assert got == [Gap(15, "behind"), *range(15, 25)]
    assert (sub.gaps, sub.missed, sub.cursor) == (1, 15, 25)
    # the same through next_nowait, drain and anext
    other = log.subscribe(start=3)
    assert other.next_nowait() == Gap(12)
    assert other.next_nowait() == 15
    third = log.subscribe(start=0)
    assert third.drain(100) == [Gap(15)]
    assert third.drain(4) == [15, 16, 17, 18]
    assert await anext(third) == 19
    assert log.gaps_behind == 3 and log.missed_behind == 15 + 12 + 15


async def test_gap_while_reading_after_the_writer_laps_a_parked_reader() -> None:
    log: FanoutLog[int] = FanoutLog(capacity=8)
    sub = log.subscribe()
    reader = asyncio.create_task(collect(sub, 9))
    await asyncio.sleep(0)
    assert log.waiting == 1
    for i in range(20):  # no yield: the reader cannot run before the window moved past it
        log.publish(i)
    got = await asyncio.wait_for(reader, 5)
    assert got == [Gap(12), *range(12, 20)]


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 12),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("pub"), st.integers(1, 30)),
            st.tuples(st.just("read"), st.integers(0, 2), st.integers(1, 30)),
            st.tuples(st.just("join"), st.integers(0, 15)),
        ),
        max_size=40,
    ),
)
def test_log_invariants_against_a_model(capacity: int, ops: list[tuple]) -> None:  # type: ignore[type-arg]
    """Every reader sees consecutive entries; gaps account exactly for what it did not see."""
    log: FanoutLog[int] = FanoutLog(capacity)
    subs = [log.subscribe(), log.subscribe(), log.subscribe()]
    seen: list[list[int | Gap]] = [[], [], []]
    starts = [0, 0, 0]
    n = 0
    for op in ops:
        if op[0] == "pub":
            for _ in range(op[1]):
                log.publish(n)
                n += 1
        elif op[0] == "read":
            i, k = op[1], op[2]
            if k % 2:
                seen[i].extend(subs[i].drain(k))
            else:
                for _ in range(k):
                    item = subs[i].next_nowait()
                    if item is None:
                        break
                    seen[i].append(item)
        else:
            i = op[1] % 3
            subs[i].close()
            subs[i] = log.subscribe(last=op[1])
            starts[i] = max(log.tail, log.head - op[1])
            seen[i] = []
        assert len(log) <= capacity
        assert len(log._buf) == capacity
    for i, sub in enumerate(subs):
        seen[i].extend(iter(sub.next_nowait, None))
        expected = starts[i]
        for item in seen[i]:
            if isinstance(item, Gap):
                assert item.missed is not None and item.missed > 0
                expected += item.missed
            else:
                assert item == expected  # in order, nothing skipped silently
                expected += 1
        assert expected == log.head  # read to the end: every entry is either seen or counted missed


async def test_join_and_leave_under_load() -> None:
    log: FanoutLog[int] = FanoutLog(capacity=256)
    stop = asyncio.Event()
    rng = random.Random(5)

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            for _ in range(rng.randint(1, 40)):
                log.publish(i)
                i += 1
            await asyncio.sleep(0)

    async def viewer(stay: int) -> tuple[int, list[int | Gap]]:
        with log.subscribe() as sub:
            first = sub.cursor
            return first, await collect(sub, stay)

    w = asyncio.create_task(writer())
    viewers = []
    for _ in range(300):
        viewers.append(asyncio.create_task(viewer(rng.randint(1, 400))))
        await asyncio.sleep(0)
    results = await asyncio.wait_for(asyncio.gather(*viewers), 20)
    stop.set()
    await w
    for first, got in results:
        assert got == list(range(first, first + len(got)))  # consecutive from the join point, no gap
    gc.collect()
    assert log.subscribers == 0
    assert log.delivered == sum(len(got) for _, got in results)


async def test_cancelling_a_waiting_reader_leaves_the_others_waiting_and_the_table_clean() -> None:
    log: FanoutLog[int] = FanoutLog(capacity=4)
    a, b = log.subscribe(), log.subscribe()
    ta = asyncio.create_task(anext(a))
    tb = asyncio.create_task(anext(b))
    await asyncio.sleep(0)
    assert log.waiting == 2
    ta.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ta
    assert log.waiting == 1
    assert not tb.done()
    log.publish(7)
    assert await asyncio.wait_for(tb, 2) == 7
    # the cancelled reader lost nothing: its cursor did not move
    assert await anext(a) == 7
    assert log.waiting == 0


async def test_timeouts_around_a_reader_do_not_leak_waiters() -> None:
    log: FanoutLog[int] = FanoutLog(capacity=4)
    sub = log.subscribe()
    for _ in range(2000):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):
                await anext(sub)
    assert log.waiting == 0
    assert len(log._waiters) <= 128  # cancelled futures are purged: the table stays bounded
    log.publish(1)
    assert await anext(sub) == 1


async def test_no_lost_wakeup_when_the_reader_parks_as_the_writer_publishes() -> None:
    """Alternate publish and read one entry at a time many times: any lost wake-up would hang."""
    log: FanoutLog[int] = FanoutLog(capacity=2)
    sub = log.subscribe()

    async def reader() -> int:
        n = 0
        async for item in sub:
            assert item == n
            n += 1
        return n

    task = asyncio.create_task(reader())
    for i in range(20_000):
        log.publish(i)
        await asyncio.sleep(0)  # the reader reads and parks again before the next publish
    log.close()
    assert await asyncio.wait_for(task, 10) == 20_000


async def test_close_ends_every_subscription_after_the_retained_entries() -> None:
    log: FanoutLog[int] = FanoutLog(capacity=3)
    parked = log.subscribe()
    waiting = asyncio.create_task(collect(parked, 100))
    await asyncio.sleep(0)
    behind = log.subscribe()
    for i in range(5):
        log.publish(i)
    log.close()
    assert await asyncio.wait_for(waiting, 2) == [Gap(2), 2, 3, 4]
    assert await collect(behind, 100) == [Gap(2), 2, 3, 4]
    late = log.subscribe(start="oldest")
    assert await collect(late, 100) == [2, 3, 4]
    assert await collect(log.subscribe(), 100) == []
    with pytest.raises(LogClosed):
        log.publish(5)
    with pytest.raises(StopAsyncIteration):
        await anext(log.subscribe())
    log.close()  # idempotent


async def test_closing_one_subscription_wakes_only_its_reader() -> None:
    log: FanoutLog[int] = FanoutLog(capacity=3)
    a, b = log.subscribe(), log.subscribe()
    ta = asyncio.create_task(collect(a, 10))
    tb = asyncio.create_task(collect(b, 1))
    await asyncio.sleep(0)
    a.close()
    assert await asyncio.wait_for(ta, 2) == []
    assert log.waiting == 1 and not tb.done()
    log.publish(1)
    assert await tb == [1]
    assert log.subscribers == 1


async def test_memory_is_bounded_whatever_readers_do() -> None:
    class Payload:
        pass

    log: FanoutLog[Payload] = FanoutLog(capacity=16)
    idle = log.subscribe()  # never reads
    first = Payload()
    ref = weakref.ref(first)
    log.publish(first)
    del first
    for _ in range(10_000):
        log.publish(Payload())
    gc.collect()
    assert ref() is None  # dropped from the ring although a reader never read it
    assert len(log) == 16 and len(log._buf) == 16
    assert idle.lag == 10_001
    assert isinstance(await anext(idle), Gap)


async def test_replay_last_and_absolute_start() -> None:
    log: FanoutLog[int] = FanoutLog(capacity=5)
    for i in range(8):
        log.publish(i)
    assert log.subscribe(last=2).drain(10) == [6, 7]
    assert log.subscribe(last=100).drain(10) == [3, 4, 5, 6, 7]
    assert log.subscribe(start=5).drain(10) == [5, 6, 7]
    assert log.subscribe().drain(10) == []
    assert [s for s, _ in log.retained()] == [3, 4, 5, 6, 7]
    assert log.entry(3) == 3 and log.entry(7) == 7
    for outside in (2, 8):
        with pytest.raises(IndexError):
            log.entry(outside)
    with pytest.raises(ValueError):
        FanoutLog(0)


async def test_upstream_gap_markers_are_seen_in_order() -> None:
    log: FanoutLog[int] = FanoutLog(capacity=10)
    sub = log.subscribe()
    log.publish(1)
    log.mark_gap("disconnected")
    log.publish(2)
    assert sub.drain(10) == [1, Gap(None, "disconnected"), 2]


async def test_publish_without_wake_then_wake() -> None:
    log: FanoutLog[int] = FanoutLog(capacity=8)
    sub = log.subscribe()
    reader = asyncio.create_task(collect(sub, 3))
    await asyncio.sleep(0)
    for i in range(3):
        log.publish(i, wake=False)
    await asyncio.sleep(0)
    assert not reader.done() and log.waiting == 1  # appended, nobody woken yet
    assert log.subscribe(start="oldest").drain(10) == [0, 1, 2]  # an awake reader sees them at once
    log.wake()
    assert await asyncio.wait_for(reader, 2) == [0, 1, 2]


async def test_encoded_view_is_filled_once_per_entry_and_sliced_per_reader() -> None:
    calls: list[int] = []

    def encode(item: int) -> bytes:
        calls.append(item)
        return b"<%d>" % item

    log: FanoutLog[int] = FanoutLog(capacity=4)
    log.publish(0)
    view = log.view(encode, lambda g: b"<gap>")
    assert log.view(encode, view.encode_gap) is view
    subs = [log.subscribe(start="oldest") for _ in range(50)]
    for i in range(1, 6):
        log.publish(i)
    log.mark_gap()
    assert calls == [0, 1, 2, 3, 4, 5]  # once per entry, not once per reader
    for sub in subs:
        gap, frames = sub.drain_encoded(view, 100)
        assert gap == Gap(3) and frames == []
        assert sub.drain_encoded(view, 100) == (None, [b"<3>", b"<4>", b"<5>", b"<gap>"])


async def test_metrics_are_read_from_the_log_at_scrape_time() -> None:
    from onair.fanout import metrics

    log: FanoutLog[int] = FanoutLog(capacity=4, name="metrics-test")
    a, b = log.subscribe(), log.subscribe()
    for i in range(6):
        log.publish(i)
    assert a.drain(10) == [Gap(2)]
    assert a.drain(10) == [2, 3, 4, 5]
    assert b.drain(2) == [Gap(2)]
    assert b.drain(2) == [2, 3]
    b.close()
    assert await asyncio.wait_for(_parked_then_woken(a, log), 2) == 6
    snap = metrics.snapshot()
    assert snap["onair_fanout_subscribers{log=metrics-test}"] == 1
    assert snap["onair_fanout_published_total{log=metrics-test}"] == 7
    # a reader reports what it delivered when it parks, skips or closes: a's last entry is not in yet
    assert snap["onair_fanout_delivered_total{log=metrics-test}"] == 4 + 2
    assert snap["onair_fanout_gaps_total{log=metrics-test}"] == 2
    assert snap["onair_fanout_missed_total{log=metrics-test}"] == 4
    a.close()
    assert metrics.snapshot()["onair_fanout_delivered_total{log=metrics-test}"] == 4 + 2 + 1
    assert metrics.snapshot()["onair_fanout_subscribers{log=metrics-test}"] == 0
    metrics.ensure_registered()  # idempotent
    metrics.ensure_registered()


async def _parked_then_woken(sub: Subscription[int], log: FanoutLog[int]) -> int:
    reader = asyncio.create_task(anext(sub))
    await asyncio.sleep(0)
    assert log.waiting == 1
    log.publish(6)
    return await reader


async def test_delivered_counter_excludes_skipped_entries() -> None:
    """The log's delivered counter (metrics) counts what readers got, not what they skipped."""
    log: FanoutLog[int] = FanoutLog(4, name="delivered-test")
    sub = log.subscribe()
    for i in range(3):
        log.publish(i)
    assert sub.drain(10) == [0, 1, 2]
    for i in range(3, 13):  # 10 more: the reader falls 6 behind the window of 4
        log.publish(i)
    assert sub.drain(10) == [Gap(6)]
    assert sub.drain(2) == [9, 10]
    assert sub.skip_to_head() == 2
    log.publish(13)
    assert sub.drain(10) == [13]
    sub.close()
    assert log.delivered == 3 + 2 + 1
    assert (sub.gaps, sub.missed) == (2, 8)
