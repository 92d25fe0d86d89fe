"""Resilience for calls to a dependency: :class:`CircuitBreaker` (closed / open / half-open).

A breaker guards one dependency (an upstream service, a database, an API). While it is **closed**
every call goes through and its outcome is counted. It **opens** when either

* ``consecutive_failures`` calls in a row failed, or
* over the last ``window_s`` seconds at least ``min_calls`` calls finished and at least
  ``failure_ratio`` of them failed,

and then refuses calls at once (:class:`CircuitOpen`, with ``retry_after_s``) for ``open_s``
seconds, so a dead dependency costs callers nothing and gets room to recover. After that it is
**half-open**: up to ``half_open_calls`` trial calls go through (the rest are refused); a trial
success closes it, a trial failure opens it again for twice as long (capped at ``max_open_s``).

Only the caller knows what a failure is (a timeout or a refused connection usually is; a 404 is
not), so outcomes are reported explicitly::

    breaker.acquire()                # raises CircuitOpen while open
    try:
        result = await call()
    except (ConnectionError, TimeoutError):
        breaker.failure()
        raise
    except BaseException:
        breaker.release()            # neither: cancelled, or the caller's own error
        raise
    breaker.success()

or ``async with breaker.guard(): ...`` (failures: exceptions of ``failure_types``).

Every ``acquire`` must be followed by exactly one of ``success``/``failure``/``release``. The class
is for one asyncio event loop (no locks: every method is synchronous and short). ``on_change``
is called with ``(breaker, old_state, new_state)`` for logs and metrics.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final, Literal

State = Literal["closed", "open", "half_open"]

__all__ = ["STATE_VALUES", "CircuitBreaker", "CircuitOpen", "State"]

#: Numeric value of each state (a Prometheus gauge): 0 closed, 1 half-open, 2 open.
STATE_VALUES: Final[dict[str, int]] = {"closed": 0, "half_open": 1, "open": 2}


class CircuitOpen(ConnectionError):
    """The breaker refused the call without trying: the dependency is considered down."""

    def __init__(self, name: str, retry_after_s: float) -> None:
        super().__init__(f"circuit of {name} is open; retry in {retry_after_s:.1f} s")
        self.name = name
        self.retry_after_s = retry_after_s


class CircuitBreaker:
    """A circuit breaker for one dependency (see the module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        consecutive_failures: int = 5,
        failure_ratio: float = 0.5,
        min_calls: int = 20,
        window_s: float = 10.0,
        open_s: float = 5.0,
        max_open_s: float = 60.0,
        half_open_calls: int = 1,
        failure_types: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, OSError),
        on_change: Callable[[CircuitBreaker, State, State], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if consecutive_failures < 1 or min_calls < 1 or half_open_calls < 1:
            raise ValueError("consecutive_failures, min_calls and half_open_calls must be >= 1")
        if not 0 < failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if window_s <= 0 or open_s <= 0 or max_open_s < open_s:
            raise ValueError("window_s and open_s must be > 0 and max_open_s >= open_s")
        self.name = name
        self.consecutive_failures = consecutive_failures
        self.failure_ratio = failure_ratio
        self.min_calls = min_calls
        self.window_s = window_s
        self.open_s = open_s
        self.max_open_s = max_open_s
        self.half_open_calls = half_open_calls
        self.failure_types = failure_types
        self.on_change = on_change
        self._clock = clock
        self._state: State = "closed"
        self._opened_at = 0.0
        self._open_for = open_s
        self._streak = 0  # consecutive failures while closed
        self._trials = 0  # trial calls in flight while half-open
        # one bucket per second of the window: [second, calls, failures]
        self._buckets: deque[list[int]] = deque()
        self.opened = 0  # how many times it opened (metrics, tests)
        self.refused = 0  # calls refused while open or half-open and busy

    # -- state -------------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The current state; an open breaker whose time is up reads as half-open."""
        if self._state == "open" and self._clock() - self._opened_at >= self._open_for:
            self._move("half_open")
        return self._state

    @property
    def retry_after_s(self) -> float:
        """Seconds until an open breaker lets a trial through (0 when not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._opened_at + self._open_for - self._clock())

    def _move(self, new: State) -> None:
        old, self._state = self._state, new
        if new == "open":
            self._opened_at = self._clock()
            self.opened += 1
        if new == "closed":
            self._open_for = self.open_s
            self._streak = 0
            self._buckets.clear()
        if new != "half_open":
            self._trials = 0
        if old != new and self.on_change is not None:
            self.on_change(self, old, new)

    def _trip(self) -> None:
        if self._state == "half_open":  # a failed trial: back off
            self._open_for = min(self._open_for * 2, self.max_open_s)
        self._move("open")

    # -- calls -------------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Let a call through, or raise :class:`CircuitOpen`."""
        state = self.state
        if state == "closed":
            return
        if state == "half_open" and self._trials < self.half_open_calls:
            self._trials += 1
            return
        self.refused += 1
        wait = self.retry_after_s if state == "open" else min(1.0, self.open_s)
        raise CircuitOpen(self.name, wait)

    def success(self) -> None:
        """The call worked."""
        if self._state == "half_open":
            self._move("closed")
            return
        if self._state == "closed":
            self._streak = 0
            self._count(failed=False)

    def failure(self) -> None:
        """The call failed in a way that says the dependency is unwell."""
        if self._state == "half_open":
            self._trip()
            return
        if self._state != "closed":
            return  # a call admitted before the breaker opened
        self._streak += 1
        calls, failures = self._count(failed=True)
        if self._streak >= self.consecutive_failures or (
            calls >= self.min_calls and failures >= math.ceil(self.failure_ratio * calls)
        ):
            self._trip()

    def release(self) -> None:
        """The call ended with no verdict on the dependency (cancelled, the caller's own error)."""
        if self._state == "half_open" and self._trials > 0:
            self._trials -= 1

    def _count(self, *, failed: bool) -> tuple[int, int]:
        now = int(self._clock())
        buckets = self._buckets
        while buckets and buckets[0][0] <= now - self.window_s:
            buckets.popleft()
        if buckets and buckets[-1][0] == now:
            bucket = buckets[-1]
        else:
            bucket = [now, 0, 0]
            buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += failed
        return sum(b[1] for b in buckets), sum(b[2] for b in buckets)

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """``async with breaker.guard(): await call()``: failures are ``failure_types`` exceptions."""
        self.acquire()
        try:
            yield
        except self.failure_types:
            self.failure()
            raise
        except BaseException:
            self.release()
            raise
        self.success()

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state!r})"
