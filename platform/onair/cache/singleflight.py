"""Single-flight: concurrent calls for the same key share one in-flight piece of work.

Like Go's ``singleflight.Group.Do`` it returns ``(value, shared)``. The work runs in its own task,
so a caller that is cancelled stops waiting without cancelling the work for the others; an
exception reaches every waiter; nothing is remembered once the work is done. The group is an
object (one per reader), never a global.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


async def _run(fn: Callable[[], Awaitable[V]]) -> V:
    return await fn()


class _Flight(Generic[V]):
    __slots__ = ("callers", "task")

    def __init__(self, task: asyncio.Task[V]) -> None:
        self.task = task
        self.callers = 1


class SingleFlight(Generic[K, V]):
    """A group of in-flight calls keyed by ``K``."""

    def __init__(self) -> None:
        self._flights: dict[K, _Flight[V]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def in_flight(self, key: K) -> bool:
        return key in self._flights

    async def do(self, key: K, fn: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """Run ``fn`` once for all concurrent callers of ``key``; ``shared`` is True when the result
        went to more than one caller."""
        flight = self._flights.get(key)
        if flight is None:
            task = asyncio.create_task(_run(fn))
            flight = _Flight(task)
            self._flights[key] = flight
            task.add_done_callback(lambda t: self._finished(key, flight, t))
        else:
            flight.callers += 1
        # shield: cancelling this caller must not cancel the shared task.
        value = await asyncio.shield(flight.task)
        return value, flight.callers > 1

    def forget(self, key: K) -> None:
        """Later callers of ``key`` start new work instead of joining the current flight (used when
        an invalidation makes the in-flight result unfit for readers that start after it)."""
        self._flights.pop(key, None)

    def forget_all(self) -> None:
        self._flights.clear()

    def _finished(self, key: K, flight: _Flight[V], task: asyncio.Task[V]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: no "exception was never retrieved" if nobody waits
