"""``FanoutLog``: one bounded, append-only log shared by every local subscriber, a cursor per reader.

The writer's state and the readers' state are kept apart. ``publish`` stores one reference in a
ring of ``capacity`` slots, bumps the head sequence number and wakes the readers that are parked
(each once); it never touches a per-subscriber queue because there is none. A
:class:`Subscription` is an async iterator that holds only its cursor, the sequence number of the
next entry it wants, and walks forward on its own.

Two traps of the original design are avoided by construction:

* **Lost wake-up.** A reader decides to wait only after comparing its cursor with the head, and
  registers its waiter in the same synchronous step (no ``await`` in between). ``publish`` bumps
  the head and takes every registered waiter (to resume it) in one synchronous step too. On one
  event loop nothing can run between the check and the registration, so a wake-up cannot fall in
  a crack and no periodic re-broadcast timer is needed.
* **Silent gap.** A reader whose cursor is older than the oldest retained entry gets an explicit
  ``Gap(missed=n)`` with the exact number of entries it lost, then resumes at the oldest retained
  entry.

Each parked reader waits on its own :class:`Waiter`, registered in the log's waiter table;
``publish`` swaps the table for an empty one and schedules **one** loop callback that resumes every
waiter it held. A waiter is an ``asyncio.Future`` that keeps its task's wake-up for the log to run:
with plain futures (what ``asyncio.Event`` and ``Condition`` use) each wake-up would schedule one
callback handle, with its argument tuple, per reader. A single future shared by all readers would
be cheaper still, but cancelling any one waiting task cancels the future it awaits, which would
throw ``CancelledError`` into every other reader; a per-reader waiter keeps cancellation local.

The log is bound to one event loop and is not thread-safe; call ``publish`` from the loop (use
``loop.call_soon_threadsafe(log.publish, item)`` from another thread).
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")
E = TypeVar("E")

GapReason = Literal["behind", "disconnected", "slow-client", "upstream"]


@dataclass(frozen=True, slots=True)
class Gap:
    """Entries were lost at this point of a stream.

    ``missed`` is the exact count when it is known (a reader fell behind the retained window), or
    ``None`` when it cannot be known (the NATS connection was down for a while).
    """

    missed: int | None
    reason: GapReason = "behind"


#: Every live log of the process, for the metrics collector (held weakly).
ALL_LOGS: weakref.WeakSet[FanoutLog[Any]] = weakref.WeakSet()


class LogClosed(RuntimeError):
    """Raised by ``publish`` on a closed log."""


class FanoutLog(Generic[T]):
    """A bounded append-only log of ``T`` (and ``Gap`` markers) read by any number of cursors.

    Entries get sequence numbers 0, 1, 2, ...; the log retains the last ``capacity`` of them.
    ``head`` is the sequence number the next entry will get; ``tail`` the oldest retained one.
    """

    __slots__ = (
        "__weakref__",
        "_announced",
        "_buf",
        "_capacity",
        "_closed",
        "_head",
        "_n_subs",
        "_purge_at",
        "_views",
        "_waiters",
        "delivered_reported",
        "gaps_behind",
        "missed_behind",
        "name",
    )

    def __init__(self, capacity: int = 1024, *, name: str = "fanout") -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.name = name
        self._capacity = capacity
        self._buf: list[T | Gap | None] = [None] * capacity
        self._head = 0
        # The head as of the last wake-up (publish with wake=True, or wake()): what a writer that
        # batches on purpose has announced; a task that delivers to many readers (the SSE pusher)
        # goes on without parking only while there is announced work.
        self._announced = 0
        self._closed = False
        # Parked readers, one waiter each. A waiter cancelled with its task (or resolved by
        # sub.close()) stays until the next wake-up swaps the table, or a purge when it grows.
        # (``None``: the table handed to _resume_all is emptied slot by slot.)
        self._waiters: list[Waiter | None] = []
        self._purge_at = 64
        self._n_subs = 0
        self._views: dict[tuple[object, object], EncodedView[Any]] = {}
        # Counters read by the metrics collector (plain ints: nothing is paid per delivery; a
        # reader reports what it delivered when it parks, skips or closes).
        self.gaps_behind = 0
        self.missed_behind = 0
        self.delivered_reported = 0
        ALL_LOGS.add(self)

    # -- state ---------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def head(self) -> int:
        """Sequence number of the next entry (= number of entries ever appended)."""
        return self._head

    @property
    def tail(self) -> int:
        """Sequence number of the oldest retained entry."""
        return max(0, self._head - self._capacity)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def subscribers(self) -> int:
        return self._n_subs

    @property
    def waiting(self) -> int:
        """Readers currently parked waiting for the next entry."""
        return sum(1 for w in self._waiters if w is not None and not w.done())

    def __len__(self) -> int:
        return self._head - self.tail

    def retained(self) -> Iterator[tuple[int, T | Gap]]:
        """The retained entries with their sequence numbers, oldest first."""
        for seq in range(self.tail, self._head):
            yield seq, self._buf[seq % self._capacity]  # type: ignore[misc]

    def entry(self, seq: int) -> T | Gap:
        """The retained entry with sequence number ``seq`` (``IndexError`` when it is not retained)."""
        if not self.tail <= seq < self._head:
            raise IndexError(f"entry {seq} is not retained (retained: {self.tail}..{self._head - 1})")
        return self._buf[seq % self._capacity]  # type: ignore[return-value]

    @property
    def delivered(self) -> int:
        """Entries handed to readers, as of each reader's last wait, skip or close."""
        return self.delivered_reported

    # -- writer --------------------------------------------------------------------------------
    def publish(self, item: T | Gap, *, wake: bool = True) -> int:
        """Append ``item``, wake the parked readers once; return its sequence number. O(1) + wakes.

        ``wake=False`` appends without waking (a writer batching on purpose calls :meth:`wake`
        later); readers that are awake see the entry at once either way.
        """
        if self._closed:
            raise LogClosed(f"fan-out log {self.name!r} is closed")
        seq = self._head
        slot = seq % self._capacity
        self._buf[slot] = item
        if self._views:
            for view in self._views.values():
                view.buf[slot] = view.encode_entry(item)
        self._head = seq + 1
        if wake:
            self._announced = seq + 1
            if self._waiters:
                self._wake()
        return seq

    def wake(self) -> None:
        """Wake the parked readers (after ``publish(..., wake=False)``)."""
        self._announced = self._head
        if self._waiters:
            self._wake()

    def view(self, encode: Callable[[T], E], encode_gap: Callable[[Gap], E]) -> EncodedView[E]:
        """A ring parallel to this one holding each entry encoded once (e.g. its SSE frame).

        Filled by ``publish`` from now on (and for the retained entries right away), so every
        connection of a transport shares one encoding per message. One view per pair of functions.
        """
        key = (encode, encode_gap)
        view = self._views.get(key)
        if view is None:
            view = EncodedView(self._capacity, encode, encode_gap)
            for seq, item in self.retained():
                view.buf[seq % self._capacity] = view.encode_entry(item)
            self._views[key] = view
        return view

    def mark_gap(self, reason: GapReason = "disconnected", missed: int | None = None) -> int:
        """Append a ``Gap`` marker every reader will see in order (e.g. after a NATS reconnect)."""
        return self.publish(Gap(missed, reason))

    def close(self) -> None:
        """Accept no more entries; each subscription ends once it has read what is retained."""
        if not self._closed:
            self._closed = True
            self._wake(False)

    def _wake(self, more: bool = True) -> None:
        waiters, self._waiters = self._waiters, []
        first = waiters[0] if waiters else None
        if first is not None:
            first.get_loop().call_soon(_resume_all, waiters, more)  # one handle however many readers

    # -- readers -------------------------------------------------------------------------------
    def subscribe(self, *, start: Literal["new", "oldest"] | int = "new", last: int = 0) -> Subscription[T]:
        """A new cursor.

        ``start="new"`` (default) reads what is published from now on; ``"oldest"`` starts at the
        oldest retained entry; an ``int`` is an absolute sequence number (older than the tail
        yields a ``Gap`` first). ``last=n`` with ``"new"`` also replays up to ``n`` retained entries.
        """
        if start == "new":
            cursor = max(self.tail, self._head - max(0, last))
        elif start == "oldest":
            cursor = self.tail
        else:
            cursor = min(max(0, int(start)), self._head)
        self._n_subs += 1
        return Subscription(self, cursor)

    def _park(self) -> Waiter:
        waiters = self._waiters
        if len(waiters) >= self._purge_at:  # readers cancelled while parked: drop their waiters
            self._waiters = waiters = [w for w in waiters if w is not None and not w.done()]
            self._purge_at = max(64, 2 * len(waiters))
        waiter = Waiter(asyncio.get_running_loop())
        waiters.append(waiter)
        return waiter


class Subscription(Generic[T]):
    """A reader of a :class:`FanoutLog`: its whole state is a cursor (and its losses, if any).

    Iterate with ``async for item in sub``; items are ``T`` or :class:`Gap`. Iteration ends after
    the log is closed and the retained entries are read, or after ``sub.close()``.
    """

    __slots__ = ("_closed", "_cursor", "_log", "_losses", "_parked", "_rep_cursor")

    def __init__(self, log: FanoutLog[T], cursor: int) -> None:
        self._log = log
        self._cursor = cursor
        self._closed = False
        self._parked: Waiter | None = None
        # Cursor as of the last report: everything between it and the cursor was delivered (a
        # skip reports first, then moves both). It refers to the cursor's int, usually the log's
        # head shared by every reader, so a parked reader keeps no int of its own for this.
        self._rep_cursor = cursor
        self._losses: tuple[int, int] | None = None  # (gaps, entries missed), after the first loss

    @property
    def log(self) -> FanoutLog[T]:
        return self._log

    @property
    def cursor(self) -> int:
        """Sequence number of the next entry this reader will get."""
        return self._cursor

    @property
    def lag(self) -> int:
        """Entries published that this reader has not read yet (lost ones included)."""
        return self._log._head - self._cursor

    @property
    def gaps(self) -> int:
        """Gaps this reader got (fell behind the window, or skipped by a slow-client policy)."""
        return self._losses[0] if self._losses else 0

    @property
    def missed(self) -> int:
        """Entries this reader lost in those gaps."""
        return self._losses[1] if self._losses else 0

    @property
    def closed(self) -> bool:
        return self._closed

    def __aiter__(self) -> AsyncIterator[T | Gap]:
        # ``async for`` gets a generator over the same cursor: an async generator resumes in about
        # a third of the time of an ``__anext__`` coroutine call. ``anext(sub)`` uses ``__anext__``.
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T | Gap]:
        log = self._log
        buf = log._buf
        cap = log._capacity
        while not self._closed:
            cursor = self._cursor
            head = log._head
            if cursor < head:
                if cursor < head - cap:
                    yield self._skip_to(head - cap)
                else:
                    self._cursor = cursor + 1
                    yield buf[cursor % cap]  # type: ignore[misc]
            elif log._closed or not await self.wait():
                return

    async def __anext__(self) -> T | Gap:
        # Fast path: the entry is there and retained. No await, no allocation.
        log = self._log
        cursor = self._cursor
        if log._head - log._capacity <= cursor < log._head and not self._closed:
            self._cursor = cursor + 1
            return log._buf[cursor % log._capacity]  # type: ignore[return-value]
        return await self._next_slow()

    def next_nowait(self) -> T | Gap | None:
        """The next entry or gap if one is ready, else ``None``; raises ``StopAsyncIteration`` at the end."""
        if self._closed:
            raise StopAsyncIteration
        log = self._log
        cursor = self._cursor
        head = log._head
        if cursor < head:
            tail = head - log._capacity
            if cursor < tail:
                return self._skip_to(tail)
            self._cursor = cursor + 1
            return log._buf[cursor % log._capacity]
        if log._closed:
            raise StopAsyncIteration
        return None

    def drain(self, limit: int) -> list[T | Gap]:
        """Up to ``limit`` ready entries; never waits.

        A reader that fell behind the window gets ``[Gap(missed, "behind")]`` alone (its cursor
        moves to the oldest retained entry); ``Gap`` markers that were published (``mark_gap``)
        come in place, like any entry.
        """
        out: list[T | Gap] = []
        if self._closed or limit < 1:
            return out
        log = self._log
        cursor = self._cursor
        head = log._head
        if cursor >= head:
            return out
        tail = head - log._capacity
        if cursor < tail:
            out.append(self._skip_to(tail))
            return out
        end = min(head, cursor + limit)
        cap = log._capacity
        buf = log._buf
        a, b = cursor % cap, end % cap
        if a < b:
            out.extend(buf[a:b])  # type: ignore[arg-type]
        else:
            out.extend(buf[a:])  # type: ignore[arg-type]
            out.extend(buf[:b])  # type: ignore[arg-type]
        self._cursor = end
        return out

    def wait(self) -> Awaitable[bool]:
        """Await until an entry (or gap) may be ready: ``True``; ``False`` once the subscription ended.

        A plain method returning an awaitable: a reader with something to read does not suspend,
        and a parked reader holds one :class:`Waiter` and nothing else.
        """
        log = self._log
        if self._closed:
            return _FALSE
        if self._cursor < log._head:
            return _TRUE
        if log._closed:
            return _FALSE
        self._report()
        waiter = self._parked = log._park()
        return waiter

    def drain_encoded(self, view: EncodedView[E], limit: int) -> tuple[Gap | None, list[E]]:
        """Like :meth:`drain` but the encoded entries of ``view``: ``(gap, [])`` if this reader
        fell behind the window (the cursor moves to the oldest retained entry), else
        ``(None, up to limit encoded entries)`` - a slice of the view's ring, no per-entry work."""
        if self._closed or limit < 1:
            return None, []
        log = self._log
        cursor = self._cursor
        head = log._head
        if cursor >= head:
            return None, []
        tail = head - log._capacity
        if cursor < tail:
            return self._skip_to(tail), []
        end = min(head, cursor + limit)
        cap = log._capacity
        buf = view.buf
        a, b = cursor % cap, end % cap
        self._cursor = end
        if a < b:
            return None, buf[a:b]  # type: ignore[return-value]
        return None, buf[a:] + buf[:b]  # type: ignore[return-value]

    def _report(self) -> None:
        cursor = self._cursor
        self._log.delivered_reported += cursor - self._rep_cursor
        self._rep_cursor = cursor

    async def _next_slow(self) -> T | Gap:
        while True:
            item = self.next_nowait()
            if item is not None:
                return item
            if not await self.wait():
                raise StopAsyncIteration

    def _skip_to(self, tail: int) -> Gap:
        missed = tail - self._cursor
        self._lose(missed)
        return Gap(missed, "behind")

    def _lose(self, missed: int) -> None:
        """Move the cursor ``missed`` entries forward without delivering them; count one gap."""
        self._report()
        self._cursor = self._rep_cursor = self._cursor + missed
        gaps, lost = self._losses or (0, 0)
        self._losses = (gaps + 1, lost + missed)
        self._log.gaps_behind += 1
        self._log.missed_behind += missed

    def skip_to_head(self) -> int:
        """Drop everything not read yet (a slow-client policy); return how many entries were skipped."""
        skipped = self._log._head - self._cursor
        if skipped > 0:
            self._lose(skipped)
        return max(0, skipped)

    def close(self) -> None:
        """Leave the log; a reader parked on this subscription wakes up and its iteration ends."""
        if self._closed:
            return
        self._report()
        self._closed = True
        self._log._n_subs -= 1
        waiter = self._parked
        if waiter is not None:  # wake only the reader parked on this subscription
            self._parked = None
            if not waiter.done():
                waiter.set_result(False)

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A subscription dropped without close() still leaves the count.
        if not getattr(self, "_closed", True):
            self._report()
            self._log._n_subs -= 1


class EncodedView(Generic[E]):
    """The ring of one encoding of a log's entries (see :meth:`FanoutLog.view`)."""

    __slots__ = ("buf", "encode", "encode_gap")

    def __init__(self, capacity: int, encode: Callable[[Any], E], encode_gap: Callable[[Gap], E]) -> None:
        self.buf: list[E | None] = [None] * capacity
        self.encode = encode
        self.encode_gap = encode_gap

    def encode_entry(self, item: Any) -> E:
        return self.encode_gap(item) if isinstance(item, Gap) else self.encode(item)


class Waiter(asyncio.Future[bool]):
    """The future a parked reader awaits: resolved once with ``True`` (entries may be ready) or
    ``False`` (the subscription or the log ended), or cancelled with the reader's task.

    An ``asyncio.Future`` in every respect (tasks, ``wait_for``, ``gather``, ``shield`` and
    ``wait`` take it as one) except that it keeps its first done-callback - the wake-up of the task
    that awaits it - for the log to run: the log resumes all the readers of one wake-up from a
    single loop callback (:func:`_resume_all`) where a plain future would schedule one handle per
    reader. Further callbacks (``wait_for``'s, ``gather``'s) are the future's own, scheduled as
    usual. Not thread-safe, like the log.
    """

    __slots__ = ("_wake_cb", "_wake_ctx")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._wake_cb: Callable[[Any], object] | None = None
        self._wake_ctx: contextvars.Context | None = None

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None
    ) -> None:
        if self._wake_cb is None and not self.done():
            self._wake_cb, self._wake_ctx = fn, context
        else:
            super().add_done_callback(fn, context=context)

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        removed = super().remove_done_callback(fn)
        if self._wake_cb is not None and self._wake_cb == fn:
            self._wake_cb = self._wake_ctx = None
            removed += 1
        return removed

    def cancel(self, msg: Any | None = None) -> bool:
        if not super().cancel(msg):
            return False
        self._schedule_wake()
        return True

    def set_result(self, result: bool) -> None:
        """Resolve this waiter alone (its callbacks run on the next loop iteration)."""
        super().set_result(result)
        self._schedule_wake()

    def _schedule_wake(self) -> None:
        fn, ctx = self._wake_cb, self._wake_ctx
        if fn is not None:
            self._wake_cb = self._wake_ctx = None
            self.get_loop().call_soon(fn, self, context=ctx)


def _resume_all(slots: list[Waiter | None], more: bool) -> None:
    """Resolve the waiters of one wake-up and run their tasks' wake-ups here, in one loop callback.

    What one ``call_soon`` handle per future would do: a wake-up that raises is reported to the
    loop's exception handler and the others still run; on ``KeyboardInterrupt`` or ``SystemExit``
    the rest is rescheduled before the exception propagates."""
    for i in range(len(slots)):
        waiter = slots[i]
        slots[i] = None  # a resumed reader parks on a new waiter: the old one goes now, not at the end
        if waiter is None or waiter.done():  # cancelled, or resolved alone (sub.close()) meanwhile
            continue
        fn, ctx = waiter._wake_cb, waiter._wake_ctx
        waiter._wake_cb = waiter._wake_ctx = None
        asyncio.Future.set_result(waiter, more)  # schedules only the future's own extra callbacks
        if fn is None:
            continue
        try:
            if ctx is None:
                fn(waiter)
            else:
                ctx.run(fn, waiter)
        except (SystemExit, KeyboardInterrupt):
            if i + 1 < len(slots):
                waiter.get_loop().call_soon(_resume_all, slots[i + 1 :], more)
            raise
        except BaseException as exc:
            waiter.get_loop().call_exception_handler(
                {"message": "exception in a fan-out reader's wake-up", "exception": exc, "future": waiter}
            )


class _Immediate:
    """An awaitable that completes at once with a fixed value (no allocation but a generator)."""

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, bool]:
        return self.value
        yield  # pragma: no cover - unreachable; makes __await__ a generator


_TRUE = _Immediate(True)
_FALSE = _Immediate(False)
