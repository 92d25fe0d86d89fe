"""Serve a fan-out subscription as Server-Sent Events: sse-starlette, or a lean ASGI stream.

``sse_response(sub)`` is an sse-starlette ``EventSourceResponse`` for any route; ``SSEStream(sub)``
is the same stream as a bare ASGI app for the hot path (see its docstring).

Each wake-up writes every ready entry in one chunk (frames are encoded once per message and
shared by all connections), so a busy stream costs one send per connection per wake-up, not one
per message. Heartbeats are SSE comments (``: ping``) every ``heartbeat_s``; a client that goes away
is noticed by sse-starlette (``http.disconnect``) and its cursor is closed.

Slow clients: a client that reads slower than the stream makes its sends block, so its cursor
falls behind; when it falls out of the log's window (or further than ``max_lag`` entries) the
connection's policy applies:

* ``"skip"``: send ``event: gap`` with ``{"missed": n, "reason": ...}`` and carry on from the oldest
  retained entry (or from the newest one, for ``max_lag``);
* ``"disconnect"``: send that gap event, then end the response (counted in
  ``onair_fanout_slow_client_disconnects_total{transport="sse"}``).

Gaps that come from upstream (NATS was down) are forwarded as ``event: gap`` under both policies.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from typing import Any, Literal, TypeVar

import orjson
from sse_starlette import EventSourceResponse
from starlette.types import Message, Receive, Scope, Send

from onair.fanout import metrics
from onair.fanout.log import EncodedView, FanoutLog, Gap, Subscription, Waiter

T = TypeVar("T")
SlowClientPolicy = Literal["skip", "disconnect"]


def default_sse_encode(item: Any) -> bytes:
    """An entry's SSE frame: ``item.sse_frame()`` when it has one (encoded once), else ``data: str``."""
    frame = getattr(item, "sse_frame", None)
    if frame is not None:
        return frame()
    lines = str(item).splitlines() or [""]
    return ("".join(f"data: {line}\n" for line in lines) + "\n").encode()


def gap_frame(gap: Gap) -> bytes:
    return b"event: gap\ndata: " + orjson.dumps({"missed": gap.missed, "reason": gap.reason}) + b"\n\n"


async def sse_stream(
    sub: Subscription[T],
    *,
    encode: Callable[[T], bytes] = default_sse_encode,
    slow_client: SlowClientPolicy = "skip",
    max_lag: int | None = None,
    batch: int = 512,
    on_close: Callable[[], None] | None = None,
    initial: Sequence[bytes] = (),
    keep: Callable[[T], bool] | None = None,
) -> AsyncIterator[bytes]:
    """The body of an SSE response: chunks of encoded frames, ``event: gap`` where entries were lost.

    ``initial`` frames are sent first (e.g. a snapshot of the current state, read *after* the
    subscription was made so nothing falls between the two). ``keep(entry)`` is a filter of this
    connection's own (e.g. drop states older than the snapshot it was sent); it sees each entry
    once, gaps are always sent, and the frames sent are still the shared encodings.
    """
    view = sub.log.view(encode, gap_frame)  # each entry encoded once, shared by every connection
    try:
        if initial:
            yield b"".join(initial)
        while await sub.wait():
            if max_lag is not None and sub.lag > max_lag:
                gap = Gap(sub.skip_to_head(), "slow-client")
                yield gap_frame(gap)
                if slow_client == "disconnect":
                    metrics.slow_client_disconnect("sse")
                    return
                continue
            if keep is None:
                behind, frames = sub.drain_encoded(view, batch)
            else:
                behind, frames = _drain_kept(sub, view, batch, keep)
            if behind is not None:
                yield gap_frame(behind)
                if slow_client == "disconnect":
                    metrics.slow_client_disconnect("sse")
                    return
            elif frames:
                yield frames[0] if len(frames) == 1 else b"".join(frames)
    finally:
        sub.close()
        if on_close is not None:
            on_close()


def _drain_kept(
    sub: Subscription[T], view: EncodedView[bytes], batch: int, keep: Callable[[T], bool]
) -> tuple[Gap | None, list[bytes]]:
    """``drain_encoded`` minus the entries ``keep`` rejects (the encodings are the shared ones)."""
    if sub.cursor < sub.log.tail:  # fell behind the window: the gap, as without a filter
        return sub.drain_encoded(view, batch)
    start, cap = sub.cursor, sub.log.capacity
    items = sub.drain(batch)
    buf = view.buf
    frames = [buf[(start + i) % cap] for i, item in enumerate(items) if isinstance(item, Gap) or keep(item)]
    return None, frames  # type: ignore[return-value]


class _EventSource(EventSourceResponse):
    """sse-starlette's response, minus the per-write cancel scope when there is no send timeout."""

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is None:
            await send(message)
        else:
            await super()._send_with_timeout(send, message)


def sse_response(
    sub: Subscription[T],
    *,
    encode: Callable[[T], bytes] = default_sse_encode,
    heartbeat_s: float = 15.0,
    slow_client: SlowClientPolicy = "skip",
    max_lag: int | None = None,
    send_timeout_s: float | None = None,
    batch: int = 512,
    on_close: Callable[[], None] | None = None,
    initial: Sequence[bytes] = (),
    keep: Callable[[T], bool] | None = None,
) -> EventSourceResponse:
    """An ``EventSourceResponse`` streaming ``sub`` (closed when the client goes away).

    ``send_timeout_s`` ends the response when one write blocks that long (a client that stopped
    reading altogether), whatever the policy. ``initial`` and ``keep``: see :func:`sse_stream`.
    """
    return _EventSource(
        sse_stream(
            sub,
            encode=encode,
            slow_client=slow_client,
            max_lag=max_lag,
            batch=batch,
            on_close=on_close,
            initial=initial,
            keep=keep,
        ),
        ping=heartbeat_s,
        send_timeout=send_timeout_s,
        sep="\n",
        headers={"Cache-Control": "no-store"},
    )


class SSEStream:
    """The same stream as a bare ASGI app, for the hot path of a big fan-out.

    Equivalent to :func:`sse_response` (same frames, gap events, heartbeats, slow-client policy,
    disconnect detection) without the layers a general-purpose response adds to every write (a
    cancel scope per send, the middleware stack when mounted before the framework): with a thousand
    connections the cost per write is what bounds the latency. Use it as the ASGI app of one
    request: ``await SSEStream(sub)(scope, receive, send)``.

    While a connection is caught up, its writes are made by the :class:`_Pusher` of its log's
    encoded view (one task for every connection of the view, no task wake-up per connection);
    ``push=False`` keeps every write in the connection's own task. ``encode_gap`` makes the frame
    of a gap, ``initial`` frames are written right after the response headers (e.g. the gap a
    resuming client has to be told about), ``on_close`` runs when the stream ends, ``headers``
    are added to the response's.
    """

    def __init__(
        self,
        sub: Subscription[T],
        *,
        encode: Callable[[T], bytes] = default_sse_encode,
        heartbeat_s: float = 15.0,
        slow_client: SlowClientPolicy = "skip",
        max_lag: int | None = None,
        batch: int = 512,
        push: bool = True,
        encode_gap: Callable[[Gap], bytes] = gap_frame,
        initial: Sequence[bytes] = (),
        on_close: Callable[[], None] | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.sub: Subscription[Any] = sub
        self.push = push
        self.encode: Callable[[Any], bytes] = encode
        self.encode_gap = encode_gap
        self.initial = initial
        self.on_close = on_close
        self.headers = [*SSE_HEADERS, *headers] if headers else SSE_HEADERS
        self.heartbeat_s = heartbeat_s
        self.slow_client = slow_client
        self.max_lag = max_lag
        self.batch = batch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub = self.sub
        loop = asyncio.get_running_loop()
        # Heartbeats: with the pusher, it pings the connections it holds that were idle for
        # ``heartbeat_s`` (a connection is only idle while the pusher holds it), so a connection
        # costs no task for them. Without it, a heartbeat task per connection: the heartbeat and
        # the stream never interleave inside a write, without a lock on the hot path: the stream
        # marks its writes (``state[0]``) and the heartbeat skips a ping while one is in progress
        # (that write refreshes ``last_write`` anyway); the heartbeat holds ``hb_lock`` around its
        # own write, and the stream waits for it only if it is held.
        hb_lock: asyncio.Lock | _NoLock = _NO_LOCK if self.push else asyncio.Lock()
        state = [False, loop.time()]  # [stream write in progress, time of the last write]

        async def write(body: bytes) -> None:
            if hb_lock.locked():  # a ping is being written (its send is blocked): after it
                async with hb_lock:
                    pass
            state[0] = True
            try:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            finally:
                state[0] = False
            state[1] = loop.time()

        log = sub.log
        encode_gap = self.encode_gap
        view = log.view(self.encode, encode_gap)
        wait, drain_encoded = sub.wait, sub.drain_encoded
        max_lag, batch = self.max_lag, self.batch
        conn = _Conn(sub, send, state, hb_lock, max_lag, batch, self.heartbeat_s) if self.push else None
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        if self.initial:
            await write(b"".join(self.initial))
        # With the pusher a connection needs no task of its own but the request's: it waits for
        # the client to go away while the pusher holds it (``_held``), and pings come from the
        # pusher. Without it, a task watches for the disconnect and another sends heartbeats.
        helpers = [] if conn is not None else [asyncio.create_task(_watch_disconnect(receive, sub))]
        if self.heartbeat_s > 0 and conn is None:
            helpers.append(asyncio.create_task(_heartbeat(send, state, hb_lock, self.heartbeat_s)))
        try:
            while True:
                if (
                    conn is not None
                    and sub.cursor >= log.head
                    and not sub.closed
                    and not log.closed
                    and not hb_lock.locked()
                ):
                    # Caught up: hand the connection to the view's pusher until it needs its own
                    # loop again (a gap, a lag, a blocked send, a closed cursor or log).
                    handed = await _held(conn, _Pusher.attach(log, view, conn), receive)
                    if isinstance(handed, BaseException):
                        raise handed
                    if handed is not None:  # the pusher's send blocked: finish it here
                        try:
                            await _finish(*handed)
                        finally:
                            state[0] = False
                        state[1] = loop.time()
                    continue
                if not await wait():
                    break
                if max_lag is not None and sub.lag > max_lag:
                    await write(encode_gap(Gap(sub.skip_to_head(), "slow-client")))
                    if self.slow_client == "disconnect":
                        metrics.slow_client_disconnect("sse")
                        break
                    continue
                behind, frames = drain_encoded(view, batch)
                if behind is not None:
                    await write(encode_gap(behind))
                    if self.slow_client == "disconnect":
                        metrics.slow_client_disconnect("sse")
                        break
                elif frames:
                    await write(frames[0] if len(frames) == 1 else b"".join(frames))
            if hb_lock.locked():
                async with hb_lock:
                    pass
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if conn is not None:
                conn.leave()
            sub.close()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if self.on_close is not None:
                self.on_close()


async def _watch_disconnect(receive: Receive, sub: Subscription[Any]) -> None:
    """A connection's own watcher (without the pusher): the client left -> the stream ends."""
    while (await receive())["type"] != "http.disconnect":
        pass
    sub.close()  # wakes the stream loop, which then ends


async def _heartbeat(send: Send, state: list[Any], hb_lock: asyncio.Lock | _NoLock, every: float) -> None:
    """A connection's own heartbeat (without the pusher): ``: ping`` after ``every`` s idle."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(max(0.0, state[1] + every - loop.time()))
        if state[0] or loop.time() - state[1] < every:
            continue
        async with hb_lock:
            await send({"type": "http.response.body", "body": PING, "more_body": True})
            state[1] = loop.time()


class _NoLock:
    """Stands for the heartbeat lock of a connection without a heartbeat task: never held."""

    __slots__ = ()

    def locked(self) -> bool:
        return False

    async def __aenter__(self) -> None:  # pragma: no cover - never held, never entered
        return None

    async def __aexit__(self, *exc: object) -> None:  # pragma: no cover
        return None


_NO_LOCK = _NoLock()
PING = b": ping\n\n"
PING_MESSAGE: dict[str, Any] = {"type": "http.response.body", "body": PING, "more_body": True}


class _Conn:
    """What the pusher needs of one SSE connection (see :class:`_Pusher`)."""

    __slots__ = (
        "batch",
        "fut",
        "hb_lock",
        "heartbeat_s",
        "max_lag",
        "pusher",
        "send",
        "state",
        "sub",
        "task",
    )

    def __init__(
        self,
        sub: Subscription[Any],
        send: Send,
        state: list[Any],
        hb_lock: asyncio.Lock | _NoLock,
        max_lag: int | None,
        batch: int,
        heartbeat_s: float = 0.0,
    ) -> None:
        self.sub = sub
        self.send = send
        self.state = state
        self.hb_lock = hb_lock
        self.max_lag = max_lag
        self.batch = batch
        self.heartbeat_s = heartbeat_s
        self.fut: asyncio.Future[Any] | None = None
        self.pusher: _Pusher | None = None
        self.task: asyncio.Task[Any] | None = None  # the connection's task, while the pusher holds it

    def release(self, value: Any = None) -> None:
        """Give the connection back to its own task (``value``: a send to finish, or an error).

        The task is waiting for the client to go away (:func:`_held`); it is interrupted with a
        cancellation that it recognises by ``fut`` being done, and takes back."""
        pusher, fut = self.pusher, self.fut
        self.pusher = self.fut = None
        if pusher is not None:
            pusher.conns.pop(self, None)
            if not pusher.conns:
                pusher.idle()
        if fut is not None and not fut.done():
            fut.set_result(value)
            task, self.task = self.task, None
            if task is not None:
                task.cancel()

    def leave(self) -> None:
        self.release()


#: A pusher lets the event loop run after this many connections of a sweep (see ``_Pusher.run``).
YIELD_EVERY = 25


class _Pusher:
    """One task per (log, encoded view) that writes each wake-up's frames to every caught-up connection.

    A connection's own task parks here instead of on the log while it is caught up. On each
    wake-up the pusher goes round the connections and, for each, takes the ready frames
    (``drain_encoded``) and runs the ASGI ``send`` synchronously: a send that does not block (the
    common case: uvicorn writes to the transport) completes without the connection's task being
    woken, so a message costs one future and one task switch for the whole view instead of one per
    connection. Anything else gives the connection back to its task, which takes its usual path:
    a gap or a lag beyond ``max_lag`` (slow-client policy), more than ``batch`` entries ready, a
    closed cursor or log, a heartbeat being written, a send that blocks (its task finishes that
    very send, in order, then catches up) or fails.

    Heartbeats of the connections it holds are the pusher's too: while parked it wakes every
    ``tick_s`` (half the shortest ``heartbeat_s`` it has seen) and sends ``: ping`` to those that
    wrote nothing for their ``heartbeat_s``, the same way as data.
    """

    _all: dict[tuple[int, int, int], _Pusher] = {}

    __slots__ = ("conns", "key", "log", "parked", "task", "tick_s", "view")

    def __init__(self, key: tuple[int, int, int], log: FanoutLog[Any], view: EncodedView[bytes]) -> None:
        self.key = key
        self.log = log
        self.view = view
        self.conns: dict[_Conn, None] = {}
        self.parked: Waiter | None = None
        self.task: asyncio.Task[None] | None = None
        self.tick_s = 0.0  # 0: no connection asked for heartbeats

    @classmethod
    def attach(cls, log: FanoutLog[Any], view: EncodedView[bytes], conn: _Conn) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        key = (id(log), id(view), id(loop))
        pusher = cls._all.get(key)
        if pusher is None or pusher.task is None or pusher.task.done():  # (ids reused after a loop died)
            pusher = cls._all[key] = _Pusher(key, log, view)
            pusher.task = loop.create_task(pusher.run())
        conn.sub._report()
        conn.pusher = pusher
        fut = conn.fut = loop.create_future()
        pusher.conns[conn] = None
        if conn.heartbeat_s > 0 and (pusher.tick_s == 0 or conn.heartbeat_s / 2 < pusher.tick_s):
            pusher.tick_s = conn.heartbeat_s / 2
        return fut

    def idle(self) -> None:
        """No connection left: wake the parked pusher so that it ends (and leaves no waiter)."""
        fut = self.parked
        if fut is not None and not fut.done():
            fut.set_result(True)

    async def run(self) -> None:
        log, view, conns = self.log, self.view, self.conns
        cap = log.capacity
        buf = view.buf
        loop = asyncio.get_running_loop()
        now = loop.time
        swept = log.head  # every connection of the last sweep got at least up to this head
        try:
            while conns and not log.closed:
                ping = False
                if log._announced <= swept:  # nothing announced since the last sweep: park
                    waiter = self.parked = log._park()
                    tick = loop.call_later(self.tick_s, _tick, waiter) if self.tick_s else None
                    more = await waiter
                    self.parked = None
                    if tick is not None:
                        tick.cancel()
                    if not more or log.closed:
                        break
                    ping = log._announced <= swept  # the tick (or idle()): ping the idle ones
                    if not conns:
                        break
                # One sweep over the connections. Every YIELD_EVERY connections the loop gets a
                # turn (NATS messages are read and published meanwhile) and the sweep goes on with
                # the new head: a message waits for its connection's next turn, at most one
                # sweep, instead of the end of the current sweep and then its turn in the next.
                head = swept = log._announced  # (a writer may batch: see FanoutLog.wake)
                # The ASGI message of what drain_encoded(view, lag) would return, joined once per
                # sweep for all the connections at the same cursor (normally all of them).
                messages: dict[int, dict[str, Any]] = {}
                t = now()  # the time of the writes, for heartbeats (per YIELD_EVERY connections)
                for i, conn in enumerate(list(conns)):
                    if i and i % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                        t = now()
                        if log.closed:
                            break
                        if log._announced != head:  # (the ones already passed get it next sweep)
                            head = log._announced
                            messages.clear()
                    if conn.pusher is not self:
                        continue
                    sub = conn.sub
                    cursor = sub._cursor
                    lag = head - cursor
                    if lag <= 0:
                        if not ping or conn.heartbeat_s <= 0 or t - conn.state[1] < conn.heartbeat_s:
                            continue
                        message = PING_MESSAGE
                    elif (
                        sub._closed
                        or lag > cap
                        or lag > conn.batch
                        or (conn.max_lag is not None and lag > conn.max_lag)
                    ):  # (a connection held here has no heartbeat task, so no heartbeat lock)
                        conn.release()
                        continue
                    else:
                        found = messages.get(cursor)
                        if found is None:
                            a, b = cursor % cap, head % cap
                            frames = buf[a:b] if a < b else buf[a:] + buf[:b]
                            joined: Any = frames[0] if len(frames) == 1 else b"".join(frames)  # type: ignore[arg-type]
                            found = messages[cursor] = {
                                "type": "http.response.body",
                                "body": joined,
                                "more_body": True,
                            }
                        message = found
                        sub._cursor = head
                    state = conn.state
                    state[0] = True
                    coro: Any = conn.send(message)
                    try:
                        yielded = coro.send(None)
                    except StopIteration:
                        state[0] = False
                        state[1] = t
                        # the delivered counter of the metrics (what sub._report() does)
                        log.delivered_reported += sub._cursor - sub._rep_cursor
                        sub._rep_cursor = sub._cursor
                        continue
                    except BaseException as exc:  # handed to the connection's task
                        state[0] = False
                        conn.release(exc)
                        continue
                    conn.release((coro, yielded))  # blocked: its own task finishes this send
        finally:
            if self._all.get(self.key) is self:
                del self._all[self.key]
            for conn in list(conns):
                conn.release()


async def _held(conn: _Conn, handback: asyncio.Future[Any], receive: Receive) -> Any:
    """While the pusher holds ``conn``: wait for the client to leave, or for the pusher to give
    the connection back (what it hands over: a send to finish, an error, or None).

    The connection's own task does the waiting, so a connection costs no watcher task. The
    pusher interrupts the wait by cancelling the task after resolving ``handback``; that one
    cancellation is taken back (``uncancel``), any other one propagates.
    """
    task = asyncio.current_task()
    assert task is not None
    conn.task = task
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except asyncio.CancelledError:
        if handback.done() and not handback.cancelled() and task.uncancel() == 0:
            return handback.result()
        raise
    finally:
        if conn.task is task:
            conn.task = None
    conn.sub.close()  # the client went away: the stream loop ends
    conn.release()
    return None


def _tick(waiter: Waiter) -> None:
    """A parked pusher's heartbeat tick: wake it (it finds nothing new, and pings)."""
    if not waiter.done():
        waiter.set_result(True)


@types.coroutine
def _finish(coro: Any, yielded: Any) -> Generator[Any, Any, None]:
    """Finish, in the calling task, a coroutine first stepped elsewhere that yielded ``yielded``."""
    while True:
        try:
            value = yield yielded
        except BaseException as exc:  # thrown into the coroutine, as a task would
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(value)
            except StopIteration:
                return


SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]
