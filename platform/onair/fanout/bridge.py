"""``FanoutBridge``: NATS delivers each message to the process once; the bridge appends it to a log.

One NATS subscription per subject pattern per process feeds one :class:`FanoutLog`; every local
viewer of that pattern is a cursor on the log. Publishing goes through the base
:class:`onair.clients.NatsClient`.

Losing the NATS connection is never silent: when the client reports a disconnect, every log fed by
a core NATS subscription gets a ``Gap(missed=None, reason="disconnected")`` marker (messages
published while the link is down are lost for core NATS, and how many cannot be known). Readers see
the marker in order, between the last message before and the first message after the outage.

A message nats-py drops because the subscription's pending queue is full (a slow consumer, which
the bridge's O(1) callback makes unlikely) is not silent either: the bridge counts the drops and
appends ``Gap(missed=n, reason="upstream")`` where they happened, before the next message.

Subjects that need history (the last N chat messages for a viewer who joins) are fed from
JetStream instead, by an ordered push consumer that delivers the last N messages *of the pattern*
(also in a stream shared with other subjects) before the live ones. ``feed`` returns once that
history is in the log, so joiners find it there (``subscribe(pattern, last=N)``); after a reconnect
the ordered consumer resumes at the next stream sequence, so such logs need no gap marker.

Feeds are made once per pattern, also under concurrent callers (they all wait for the same
set-up), and can be released (``release(pattern)``) when nobody reads them any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import SlowConsumerError
from nats.js.api import ConsumerConfig, DeliverPolicy

from onair.clients.base import Lifecycle
from onair.clients.nats import NatsClient
from onair.fanout import metrics
from onair.fanout.log import FanoutLog, Subscription
from onair.logging import get_logger

log = get_logger("onair.fanout.bridge")


@dataclass(slots=True)
class FanoutMessage:
    """One NATS message as stored once in a log and shared by every reader.

    ``seq`` is its position in the log. Transport encodings are computed once per message, on
    first use, and shared by every connection (:meth:`sse_frame`, :meth:`ws_text`).
    """

    subject: str
    data: bytes
    seq: int
    received_at: float
    headers: dict[str, str] | None = None
    stream_seq: int | None = None
    _sse: bytes | None = field(default=None, repr=False, compare=False)
    _ws: str | None = field(default=None, repr=False, compare=False)

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    def sse_frame(self) -> bytes:
        """``id: <seq>`` + ``data:`` lines, encoded once for all viewers."""
        frame = self._sse
        if frame is None:
            lines = self.text().splitlines() or [""]
            body = "".join(f"data: {line}\n" for line in lines)
            frame = self._sse = f"id: {self.seq}\n{body}\n".encode()
        return frame

    def ws_text(self) -> str:
        """``{"type": "message", "seq", "subject", "data"}`` as JSON text, encoded once."""
        text = self._ws
        if text is None:
            import orjson

            text = self._ws = orjson.dumps(
                {"type": "message", "seq": self.seq, "subject": self.subject, "data": self.text()}
            ).decode()
        return text


@dataclass
class _Feed:
    pattern: str
    log: FanoutLog[FanoutMessage]
    nats_sub: NatsSubscription | None = None
    jetstream: bool = False
    wake_pending: bool = False
    # JetStream history: skip delivered messages while ``history`` or more matching ones follow
    # them (a prefix only: once one is kept, every later one is), and note when the consumer has
    # delivered everything that was pending (``caught_up``).
    history: int = 0
    keeping: bool = True
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    setup: asyncio.Future[None] | None = None
    # Messages nats-py dropped (slow consumer), and how many older ones were still queued when
    # the first of them was dropped: the gap goes after those.
    dropped: int = 0
    drop_after: int = 0

    def wake(self) -> None:
        self.wake_pending = False
        self.log.wake()

    def flush_drops(self) -> None:
        """Append the gap for the messages nats-py dropped (exact count) and start counting anew."""
        if self.dropped and not self.log.closed:
            self.log.mark_gap("upstream", missed=self.dropped)
            metrics.upstream_gap(self.pattern)
        self.dropped = 0
        self.drop_after = 0


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


class FanoutBridge(Lifecycle):
    """Feeds local :class:`FanoutLog` s from NATS, one subscription per subject pattern.

    ``await bridge.subscribe("onair.chat.room1")`` -> a :class:`Subscription` of
    :class:`FanoutMessage`. The first call for a pattern subscribes to NATS; later calls only add a
    cursor. ``capacity`` is the number of entries each log retains (the window a slow reader has).
    The client is started by the bridge when needed and closed by it only if ``own_client``.

    ``coalesce_s > 0`` batches wake-ups: messages are appended as they arrive but parked readers
    are woken at most once per ``coalesce_s`` (one timer per log, not per reader). It trades that
    much latency for fewer, larger writes per connection when a process serves many viewers of a
    busy subject. Readers never miss a wake-up either way: they compare sequence numbers first.
    """

    def __init__(
        self,
        client: NatsClient,
        *,
        capacity: int = 1024,
        own_client: bool = False,
        coalesce_s: float = 0.0,
        pending_msgs_limit: int = 1_000_000,
    ) -> None:
        self.client = client
        self.pending_msgs_limit = pending_msgs_limit
        self.capacity = capacity
        self.coalesce_s = coalesce_s
        self.own_client = own_client
        self._feeds: dict[str, _Feed] = {}
        self._closed = False
        self._hooked = False
        self._down = False

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.client.start()
        if not self._hooked:
            self.client.on_disconnect(self._on_disconnect)
            self.client.on_reconnect(self._on_reconnect)
            self.client.on_error(self._on_error)
            self._hooked = True
        metrics.ensure_registered()

    async def close(self) -> None:
        """Unsubscribe from NATS and close every log (readers finish what is retained, then stop)."""
        if self._closed:
            return
        self._closed = True
        feeds, self._feeds = self._feeds, {}
        for feed in feeds.values():
            if feed.setup is not None and not feed.setup.done():
                feed.setup.cancel()
                with contextlib.suppress(BaseException):
                    await feed.setup
            if feed.nats_sub is not None and self._connected():
                try:
                    await feed.nats_sub.unsubscribe()
                except Exception as exc:  # pragma: no cover - best effort at shutdown
                    log.warning("fanout.unsubscribe_failed", pattern=feed.pattern, error=str(exc))
            feed.log.close()
        if self.own_client:
            await self.client.close()

    def _connected(self) -> bool:
        try:
            return bool(self.client.raw.is_connected)
        except RuntimeError:  # the client was closed first
            return False

    # -- feeds -------------------------------------------------------------------------------------
    def log_for(self, pattern: str) -> FanoutLog[FanoutMessage] | None:
        """The log of ``pattern`` once its feed is set up (None before, or when there is none)."""
        feed = self._feeds.get(pattern)
        if feed is None or feed.setup is None or not feed.setup.done() or feed.setup.cancelled():
            return None
        return feed.log if feed.setup.exception() is None else None

    async def feed(
        self,
        pattern: str,
        *,
        history: int = 0,
        stream: str | None = None,
        capacity: int | None = None,
    ) -> FanoutLog[FanoutMessage]:
        """The log fed by ``pattern``, subscribing to NATS the first time (idempotent).

        With ``history > 0`` the feed comes from JetStream (``stream`` or the stream that captures
        ``pattern``): the log starts with the last ``history`` messages matching ``pattern`` and
        this returns once they are in it (bounded by the client's timeout). ``capacity`` overrides
        the bridge's window for this log. Concurrent calls for one pattern share one set-up, and a
        caller that is cancelled does not cancel it for the others.
        """
        if self._closed:
            raise RuntimeError("FanoutBridge is closed")
        existing = self._feeds.get(pattern)
        if existing is None:
            flog: FanoutLog[FanoutMessage] = FanoutLog(capacity or self.capacity, name=pattern)
            existing = _Feed(pattern, flog, jetstream=history > 0, history=history)
            self._feeds[pattern] = existing
            existing.setup = asyncio.ensure_future(self._set_up(existing, stream))
            existing.setup.add_done_callback(_retrieve)  # also when every caller went away
        assert existing.setup is not None
        await asyncio.shield(existing.setup)
        return existing.log

    async def _set_up(self, feed: _Feed, stream: str | None) -> None:
        pattern, flog, history = feed.pattern, feed.log, feed.history
        try:
            await self.start()
            on_msg = self._on_msg(feed)
            if history > 0:
                feed.nats_sub = await self._subscribe_jetstream(feed, stream, on_msg)
            else:
                feed.nats_sub = await self.client.subscribe(
                    pattern,
                    cb=on_msg,
                    pending_msgs_limit=self.pending_msgs_limit,
                    pending_bytes_limit=1 << 30,
                )
            # The subscription is in effect at the server when feed() returns.
            await self.client.raw.flush(timeout=max(1, round(self.client.timeout_s)))
            if history > 0:
                await self._wait_for_history(feed)
        except BaseException:
            if self._feeds.get(pattern) is feed:
                del self._feeds[pattern]
            flog.close()
            if feed.nats_sub is not None:
                with contextlib.suppress(Exception):
                    await feed.nats_sub.unsubscribe()
            raise
        log.info("fanout.feed_started", pattern=pattern, jetstream=feed.jetstream, capacity=flog.capacity)

    def _on_msg(self, feed: _Feed) -> Callable[[Msg], Awaitable[None]]:
        flog = feed.log
        coalesce = self.coalesce_s

        async def on_msg(msg: Msg) -> None:
            if flog.closed:
                return
            stream_seq = None
            if feed.jetstream and msg.reply:
                try:
                    meta = msg.metadata
                    stream_seq = meta.sequence.stream
                    pending = meta.num_pending
                except Exception:  # pragma: no cover - not a JetStream delivery
                    pending = 0
                if not feed.keeping:
                    if pending >= feed.history:  # older than the history asked for
                        if pending == 0:  # pragma: no cover - only with history=0
                            feed.caught_up.set()
                        return
                    feed.keeping = True
                if pending == 0:
                    feed.caught_up.set()
            entry = FanoutMessage(msg.subject, msg.data, flog.head, time.time(), msg.headers, stream_seq)
            flog.publish(entry, wake=not coalesce)
            if feed.dropped:
                feed.drop_after -= 1
                if feed.drop_after <= 0:  # the last message older than the dropped ones
                    feed.flush_drops()
            if not coalesce:
                return
            if not feed.wake_pending:
                feed.wake_pending = True
                asyncio.get_running_loop().call_later(coalesce, feed.wake)

        return on_msg

    async def _subscribe_jetstream(
        self, feed: _Feed, stream: str | None, on_msg: Callable[[Msg], Awaitable[None]]
    ) -> NatsSubscription:
        """An ordered consumer that delivers the last ``feed.history`` messages of the pattern first.

        When the pattern is the whole stream, it starts that many stream sequences back. Otherwise
        (a room among many in one stream) it starts at the first matching message and the callback
        drops the ones followed by ``history`` or more matching messages (``num_pending``): only
        what the stream retains for the pattern is read, and the server's subject index finds it.
        """
        js = self.client.jetstream()
        pattern, history = feed.pattern, feed.history
        name = stream or await js.find_stream_name_by_subject(pattern)
        info = await js.stream_info(name)
        if list(info.config.subjects or ()) == [pattern]:
            start = max(1, info.state.last_seq - history + 1)
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
        else:
            feed.keeping = False
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        return await js.subscribe(
            pattern,
            stream=name,
            cb=on_msg,
            ordered_consumer=True,
            config=config,
            pending_msgs_limit=self.pending_msgs_limit,
            pending_bytes_limit=1 << 30,
        )

    async def _wait_for_history(self, feed: _Feed) -> None:
        """Return once the consumer delivered what was pending at its creation (the history)."""
        sub = feed.nats_sub
        assert sub is not None
        if not feed.caught_up.is_set():
            info = await sub.consumer_info()  # type: ignore[attr-defined]
            if info.num_pending == 0 and info.delivered.consumer_seq == 0:
                feed.caught_up.set()  # nothing matched: no history to wait for
        try:
            async with asyncio.timeout(max(1.0, 2 * self.client.timeout_s)):
                await feed.caught_up.wait()
        except TimeoutError:
            log.warning("fanout.history_incomplete", pattern=feed.pattern, retained=len(feed.log))
        feed.keeping = True

    async def release(self, pattern: str) -> bool:
        """Stop feeding ``pattern``: unsubscribe and close its log (its readers end). False if unknown."""
        feed = self._feeds.pop(pattern, None)
        if feed is None:
            return False
        if feed.setup is not None and not feed.setup.done():
            with contextlib.suppress(BaseException):
                await asyncio.shield(feed.setup)
        if feed.nats_sub is not None and self._connected():
            try:
                await feed.nats_sub.unsubscribe()
            except Exception as exc:  # pragma: no cover - best effort
                log.warning("fanout.unsubscribe_failed", pattern=pattern, error=str(exc))
        feed.log.close()
        log.info("fanout.feed_released", pattern=pattern)
        return True

    async def subscribe(
        self,
        pattern: str,
        *,
        last: int = 0,
        history: int = 0,
        stream: str | None = None,
        capacity: int | None = None,
    ) -> Subscription[FanoutMessage]:
        """A new local cursor on ``pattern``'s log; ``last=n`` replays up to n retained messages."""
        flog = await self.feed(pattern, history=history, stream=stream, capacity=capacity)
        return flog.subscribe(last=last)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        await self.client.publish(subject, data, headers=headers)

    # -- connection events -----------------------------------------------------------------------
    def _mark_gaps(self, why: str) -> None:
        for feed in self._feeds.values():
            if feed.jetstream or feed.log.closed:
                continue
            feed.log.mark_gap("disconnected")
            metrics.upstream_gap(feed.pattern)
        log.warning("fanout.upstream_gap", reason=why, feeds=len(self._feeds))

    async def _on_disconnect(self) -> None:
        if self._closed or self._down:
            return
        self._down = True
        self._mark_gaps("nats disconnected")

    async def _on_error(self, exc: Exception) -> None:
        """nats-py dropped a message for one of our subscriptions (its pending queue was full)."""
        if not isinstance(exc, SlowConsumerError) or self._closed:
            return
        for feed in self._feeds.values():
            if feed.nats_sub is not None and feed.nats_sub is exc.sub:
                if not feed.dropped:
                    feed.drop_after = exc.sub.pending_msgs  # older messages still queued
                feed.dropped += 1
                if feed.drop_after <= 0:
                    feed.flush_drops()
                return

    async def _on_reconnect(self) -> None:
        if self._closed:
            return
        if not self._down:  # reconnected without a disconnect report: messages may still be lost
            self._mark_gaps("nats reconnected")
        self._down = False
        log.info("fanout.reconnected", feeds=len(self._feeds))
