"""onair.resilience.CircuitBreaker: closed -> open -> half-open -> closed (or open again, longer)."""

from __future__ import annotations

import pytest

from onair.resilience import CircuitBreaker, CircuitOpen


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, **kwargs: object) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []
    b = CircuitBreaker(
        "up",
        clock=clock,
        on_change=lambda _, old, new: changes.append((old, new)),
        **kwargs,  # type: ignore[arg-type]
    )
    return b, changes


def call(b: CircuitBreaker, ok: bool) -> None:
    b.acquire()
    if ok:
        b.success()
    else:
        b.failure()


def test_opens_after_consecutive_failures_and_refuses_without_calling() -> None:
    clock = Clock()
    b, changes = breaker(clock, consecutive_failures=3, open_s=5.0)
    call(b, False)
    call(b, True)  # a success resets the streak
    call(b, False)
    call(b, False)
    assert b.state == "closed"
    call(b, False)
    assert b.state == "open" and changes == [("closed", "open")]
    with pytest.raises(CircuitOpen) as refused:
        b.acquire()
    assert refused.value.retry_after_s == pytest.approx(5.0)
    clock.now += 2
    assert b.retry_after_s == pytest.approx(3.0)


def test_opens_on_a_failure_ratio_over_the_window() -> None:
    clock = Clock()
    b, _ = breaker(clock, consecutive_failures=100, failure_ratio=0.5, min_calls=10, window_s=10)
    for i in range(9):
        call(b, i % 2 == 0)  # 5 ok, 4 failed: under min_calls
        clock.now += 0.5
    assert b.state == "closed"
    call(b, False)  # 10 calls, 5 failed
    assert b.state == "open"


def test_old_failures_leave_the_window() -> None:
    clock = Clock()
    b, _ = breaker(clock, consecutive_failures=100, failure_ratio=0.5, min_calls=6, window_s=10)
    for ok in (False, False, True, False, True):  # 3 of 5 failed, under min_calls
        call(b, ok)
    clock.now += 20  # those are forgotten: with them, 4 of 7 would open it
    call(b, True)
    call(b, False)
    assert b.state == "closed"


def test_half_open_lets_one_trial_through_then_closes_on_success() -> None:
    clock = Clock()
    b, changes = breaker(clock, consecutive_failures=1, open_s=5.0, half_open_calls=1)
    call(b, False)
    clock.now += 5
    assert b.state == "half_open"
    b.acquire()  # the trial
    with pytest.raises(CircuitOpen):
        b.acquire()  # only one at a time
    b.success()
    assert b.state == "closed"
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    call(b, True)


def test_a_failed_trial_opens_again_for_longer_capped() -> None:
    clock = Clock()
    b, _ = breaker(clock, consecutive_failures=1, open_s=2.0, max_open_s=5.0)
    call(b, False)
    for expected in (4.0, 5.0, 5.0):
        clock.now += 10
        call(b, False)  # the trial fails
        assert b.state == "open" and b.retry_after_s == pytest.approx(expected)
    clock.now += 5
    call(b, True)
    assert b.state == "closed"
    call(b, False)
    assert b.retry_after_s == pytest.approx(2.0)  # back to the base after closing


def test_release_frees_a_trial_slot_without_a_verdict() -> None:
    clock = Clock()
    b, _ = breaker(clock, consecutive_failures=1, open_s=1.0)
    call(b, False)
    clock.now += 1
    b.acquire()
    b.release()  # cancelled: no verdict
    assert b.state == "half_open"
    b.acquire()
    b.success()
    assert b.state == "closed"


async def test_guard_counts_exceptions_of_the_failure_types_only() -> None:
    clock = Clock()
    b, _ = breaker(clock, consecutive_failures=2)
    for _ in range(2):
        with pytest.raises(ValueError):
            async with b.guard():
                raise ValueError("the caller's own bug")
    assert b.state == "closed"
    for _ in range(2):
        with pytest.raises(ConnectionRefusedError):
            async with b.guard():
                raise ConnectionRefusedError()
    assert b.state == "open"
    with pytest.raises(CircuitOpen):
        async with b.guard():
            pass


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("x", failure_ratio=0)
    with pytest.raises(ValueError):
        CircuitBreaker("x", open_s=10, max_open_s=5)
