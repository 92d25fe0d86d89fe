"""The parked reader's ``Waiter``: a future-compatible object that asyncio's tools accept as a future."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from onair.fanout import FanoutLog, Subscription
from onair.fanout.log import Waiter


async def test_asyncio_treats_a_parked_readers_waiter_as_a_future() -> None:
    log: FanoutLog[int] = FanoutLog(4)
    sub = log.subscribe()
    waiter = sub.wait()
    assert isinstance(waiter, Waiter)
    assert asyncio.isfuture(waiter)
    assert asyncio.ensure_future(waiter) is waiter
    assert not waiter.done() and not waiter.cancelled()
    with pytest.raises(asyncio.InvalidStateError):
        waiter.result()
    log.publish(1)
    assert await waiter is True
    assert waiter.done() and waiter.result() is True and waiter.exception() is None


async def test_wait_for_times_out_and_cancels_only_that_waiter() -> None:
    log: FanoutLog[int] = FanoutLog(4)
    a, b = log.subscribe(), log.subscribe()
    other = asyncio.ensure_future(b.wait())
    waiter = a.wait()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(waiter, 0.01)
    assert isinstance(waiter, Waiter) and waiter.cancelled()
    with pytest.raises(asyncio.CancelledError):
        waiter.result()
    assert not other.done()
    log.publish(1)
    assert await asyncio.wait_for(other, 1) is True
    assert a.next_nowait() == 1  # the timed-out reader lost nothing


async def test_gather_shield_and_wait_accept_waiters() -> None:
    log: FanoutLog[int] = FanoutLog(4)
    subs = [log.subscribe() for _ in range(3)]
    gathered = asyncio.gather(subs[0].wait(), asyncio.shield(subs[1].wait()))
    waited = asyncio.ensure_future(asyncio.wait([asyncio.ensure_future(subs[2].wait())]))
    await asyncio.sleep(0)
    log.publish(7)
    assert await gathered == [True, True]
    done, pending = await waited
    assert len(done) == 1 and not pending


async def test_cancelling_the_task_cancels_its_waiter_only() -> None:
    log: FanoutLog[int] = FanoutLog(4)
    a, b = log.subscribe(), log.subscribe()

    async def park(sub: Subscription[int]) -> bool:
        return await sub.wait()

    ta = asyncio.create_task(park(a))
    tb = asyncio.create_task(park(b))
    await asyncio.sleep(0)
    ta.cancel("bye")
    with pytest.raises(asyncio.CancelledError):
        await ta
    assert not tb.done()
    log.publish(1)
    assert await tb is True


async def test_a_reader_resumes_in_its_own_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("who")
    log: FanoutLog[int] = FanoutLog(4)

    async def reader(name: str) -> str:
        var.set(name)
        sub = log.subscribe()
        await sub.wait()
        return var.get()

    tasks = [asyncio.create_task(reader(f"r{i}")) for i in range(5)]
    await asyncio.sleep(0)
    log.publish(1)
    assert await asyncio.gather(*tasks) == [f"r{i}" for i in range(5)]


async def test_one_failing_callback_is_reported_and_the_other_readers_still_wake() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    try:
        log: FanoutLog[int] = FanoutLog(4)
        bad = log.subscribe().wait()
        assert isinstance(bad, Waiter)

        def boom(_w: object) -> None:
            raise RuntimeError("boom")

        bad.add_done_callback(boom)
        good = asyncio.ensure_future(log.subscribe().wait())
        log.publish(1)
        assert await asyncio.wait_for(good, 1) is True
        assert [type(c["exception"]) for c in reported] == [RuntimeError]
    finally:
        loop.set_exception_handler(None)


async def test_done_callbacks_added_late_or_removed_behave_like_a_futures() -> None:
    log: FanoutLog[int] = FanoutLog(4)
    waiter = log.subscribe().wait()
    assert isinstance(waiter, Waiter)
    seen: list[str] = []

    def first(_w: object) -> None:
        seen.append("first")

    def second(_w: object) -> None:
        seen.append("second")

    waiter.add_done_callback(first)
    waiter.add_done_callback(second)
    assert waiter.remove_done_callback(first) == 1
    assert waiter.remove_done_callback(first) == 0
    log.publish(1)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    waiter.add_done_callback(first)  # already done: called soon, as a future does
    await asyncio.sleep(0)
    assert seen == ["second", "first"]
    with pytest.raises(asyncio.InvalidStateError):
        waiter.set_result(True)
    assert waiter.cancel() is False


async def test_a_publish_wakes_all_parked_readers_with_one_loop_callback() -> None:
    loop = asyncio.get_running_loop()
    log: FanoutLog[int] = FanoutLog(4)
    subs = [log.subscribe() for _ in range(100)]
    waiters = [s.wait() for s in subs]
    scheduled: list[object] = []
    real = loop.call_soon

    def spy(cb, *args, context=None):  # type: ignore[no-untyped-def]
        scheduled.append(cb)
        return real(cb, *args, context=context)

    loop.call_soon = spy  # type: ignore[method-assign]
    try:
        log.publish(1)
    finally:
        del loop.call_soon
    assert len(scheduled) == 1
    assert await asyncio.gather(*waiters) == [True] * 100  # type: ignore[arg-type]
