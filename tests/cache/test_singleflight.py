"""SingleFlight shares one in-flight call, propagates errors, survives cancelled waiters."""

import asyncio

import pytest

from onair.cache import SingleFlight


async def test_concurrent_calls_share_one_execution_and_learn_it() -> None:
    group: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    tasks = [asyncio.create_task(group.do("k", work)) for _ in range(100)]
    await asyncio.sleep(0)
    assert group.in_flight("k")
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert results == [(42, True)] * 100
    assert not group.in_flight("k")  # nothing remembered after completion


async def test_alone_is_not_shared_and_nothing_is_cached() -> None:
    group: SingleFlight[str, int] = SingleFlight()
    counter = iter(range(10))

    async def work() -> int:
        return next(counter)

    assert await group.do("k", work) == (0, False)
    assert await group.do("k", work) == (1, False)
    assert len(group) == 0


async def test_different_keys_do_not_share() -> None:
    group: SingleFlight[str, str] = SingleFlight()
    gate = asyncio.Event()

    async def work(name: str) -> str:
        await gate.wait()
        return name

    a = asyncio.create_task(group.do("a", lambda: work("a")))
    b = asyncio.create_task(group.do("b", lambda: work("b")))
    await asyncio.sleep(0)
    gate.set()
    assert await a == ("a", False)
    assert await b == ("b", False)


async def test_exception_reaches_every_waiter() -> None:
    group: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise ValueError("boom")

    tasks = [asyncio.create_task(group.do("k", work)) for _ in range(10)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, ValueError) and str(r) == "boom" for r in results)
    assert not group.in_flight("k")  # a failure is not cached either


async def test_cancelled_waiter_does_not_cancel_the_work_for_others() -> None:
    group: SingleFlight[str, str] = SingleFlight()
    gate = asyncio.Event()
    finished = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        finished.set()
        return "done"

    leader = asyncio.create_task(group.do("k", work))
    follower = asyncio.create_task(group.do("k", work))
    await asyncio.sleep(0)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    gate.set()
    assert await follower == ("done", True)
    assert finished.is_set()


async def test_all_waiters_cancelled_work_still_completes_unobserved_error_is_retrieved() -> None:
    group: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()
    ran = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        ran.set()
        raise RuntimeError("nobody listens")

    waiter = asyncio.create_task(group.do("k", work))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.set()
    await ran.wait()
    await asyncio.sleep(0)
    assert not group.in_flight("k")


async def test_forget_makes_later_callers_start_new_work() -> None:
    group: SingleFlight[str, int] = SingleFlight()
    gates = [asyncio.Event(), asyncio.Event()]
    started = 0

    async def work() -> int:
        nonlocal started
        n = started
        started += 1
        await gates[n].wait()
        return n

    first = asyncio.create_task(group.do("k", work))
    await asyncio.sleep(0)
    group.forget("k")
    second = asyncio.create_task(group.do("k", work))
    for _ in range(5):
        await asyncio.sleep(0)
    assert started == 2
    gates[1].set()
    assert await second == (1, False)
    assert group.in_flight("k") is False
    gates[0].set()
    assert await first == (0, False)
