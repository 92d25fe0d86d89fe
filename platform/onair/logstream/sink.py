"""The producer side: a structlog processor that turns event log lines into Kafka records.

``configure_logging(service, sinks=[sink])`` runs the sink after the contract checks; it returns
the event dict unchanged (the line still goes to stdout) and, for lines with a ``category``, puts
a record (topic = category, key = entity, value = the envelope) in a bounded in-memory buffer. A
background task sends the buffer in chunks. Nothing on the logging path waits for the network:

* buffer full, or the spool not yet empty -> the record is appended to the on-disk spool (so the
  order stays: buffer, then spool);
* a chunk fails (broker unreachable) -> the failed records and the rest of the buffer are written
  to the *front* of the spool, and the sender replays the spool, oldest first, with backoff, until
  the broker answers again; a spool left by a previous run is replayed on start;
* ``close()`` flushes (bounded) and spools whatever is left.

Delivery is at-least-once: a chunk that timed out may have been written by the broker and is
sent again; consumers drop the duplicate by event id / per-entity position. The broker (tansu)
does not support idempotent producers, so the producer is a plain ``acks=all`` one with one
request in flight per partition (aiokafka), which keeps per-key order.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer

from onair.clients import KafkaClient
from onair.logstream import metrics
from onair.logstream.envelope import Envelope, from_log_event, new_event_id
from onair.logstream.positions import Position
from onair.logstream.spool import Spool, SpoolRecord
from onair.logstream.topics import TopicRegistry

_log = structlog.get_logger("onair.logstream.sink")

REQUEST_ID_HEADER = "x-request-id"
"""Kafka record header carrying the request id of the request that logged the event."""


class PositionUnavailable(TimeoutError):
    """The event was logged but not acknowledged by the broker in time (it is spooled, not lost)."""


class LogStreamSink:
    """Structlog processor + background sender; ``async with LogStreamSink(kafka, spool_dir=…)``."""

    def __init__(
        self,
        kafka: KafkaClient,
        *,
        spool_dir: Path | str,
        service: str = "onair",
        buffer_size: int = 10_000,
        chunk_size: int = 1_000,
        partitions: int | None = None,
        send_timeout_s: float | None = None,
        max_backoff_s: float = 2.0,
        producer_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.kafka = kafka
        self.service = service
        self.buffer_size = buffer_size
        self.chunk_size = chunk_size
        self.send_timeout_s = send_timeout_s if send_timeout_s is not None else max(kafka.timeout_s * 3, 5.0)
        self.max_backoff_s = max_backoff_s
        self.spool = Spool(spool_dir)
        self._topics = TopicRegistry(kafka, partitions)
        self._producer_overrides = producer_overrides or {}
        self._buffer: deque[SpoolRecord] = deque()
        self._lock = threading.Lock()
        self._spooling = len(self.spool) > 0
        self._waiters: dict[str, asyncio.Future[Position]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._closing = False
        self.sent = 0
        self.failures = 0
        self.dropped = 0
        metrics.SPOOL_DEPTH.labels(service).set(len(self.spool))

    # -- the structlog processor ------------------------------------------------------------------
    def __call__(self, _logger: Any, _method: str, ed: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if ed.get("category") is not None:
            envelope = from_log_event(ed)  # a broken contract raises at the call site
            try:
                self.publish(envelope)
            except Exception:  # e.g. the spool's disk is full: lose the event, never the request
                self.dropped += 1
                metrics.DROPPED.labels(self.service).inc()
        return ed

    def publish(self, envelope: Envelope) -> None:
        """Queue one envelope (never blocks on the network; may append to the spool file)."""
        record = SpoolRecord(
            self.kafka.topic(envelope.category),
            envelope.entity,
            envelope.to_bytes(),
            envelope.event_id,
            envelope.request_id,
        )
        with self._lock:
            if self._spooling or self._closing or len(self._buffer) >= self.buffer_size:
                self._spooling = True
                self.spool.append([record])
                metrics.SPOOLED.labels(self.service).inc()
            else:
                self._buffer.append(record)
        self._poke()

    def _poke(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # -- positions (read-your-writes) -------------------------------------------------------------
    async def log_event(
        self,
        logger: Any,
        event: str,
        *,
        category: str,
        entity: str,
        level: str = "info",
        timeout_s: float = 2.0,
        **fields: Any,
    ) -> Position:
        """Log an event and return its position once the broker acknowledged it.

        Raises :class:`PositionUnavailable` after ``timeout`` (the event is still delivered later).
        """
        event_id = fields.pop("event_id", None) or new_event_id()
        fut: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        self._waiters[event_id] = fut
        try:
            getattr(logger, level)(event, category=category, entity=entity, event_id=event_id, **fields)
            try:
                async with asyncio.timeout(timeout_s):
                    return await fut
            except TimeoutError:
                raise PositionUnavailable(
                    f"event {event_id} not acknowledged within {timeout_s}s (spooled: {len(self.spool)})"
                ) from None
        finally:
            self._waiters.pop(event_id, None)

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._task = asyncio.create_task(self._run(), name="logstream-sink")

    async def __aenter__(self) -> LogStreamSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until buffer and spool are empty; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._buffer or len(self.spool) or self._inflight:
                    self._idle.clear()
                    self._poke()
                    await self._idle.wait()
            return True
        except TimeoutError:
            return False

    async def close(self, timeout_s: float = 5.0) -> None:
        """Flush (bounded by ``timeout``), then spool what is left and stop."""
        if self._task is None:
            return
        await self.flush(timeout_s)
        self._closing = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        # a chunk taken from the buffer and cut off mid-send is older than the buffer: spool it first
        current, self._current = self._current, None
        self._spill(current[0] if current is not None and not current[1] else [])
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.kafka.release(producer), timeout_s)
        metrics.SPOOL_DEPTH.labels(self.service).set(len(self.spool))

    # -- sender ----------------------------------------------------------------------------------
    _inflight = 0
    _current: tuple[list[SpoolRecord], bool] | None = None

    def _spill(self, failed: list[SpoolRecord]) -> None:
        """Move failed records and the buffer to the front of the spool (they are the oldest)."""
        with self._lock:
            records = failed + list(self._buffer)
            self._buffer.clear()
            if records:
                self.spool.prepend(records)
                metrics.SPOOLED.labels(self.service).inc(len(records))
            if len(self.spool):
                self._spooling = True
        metrics.SPOOL_DEPTH.labels(self.service).set(len(self.spool))

    def _take(self) -> tuple[list[SpoolRecord], bool]:
        with self._lock:
            if self._buffer:
                n = min(self.chunk_size, len(self._buffer))
                return [self._buffer.popleft() for _ in range(n)], False
            chunk = self.spool.peek(self.chunk_size)
            if chunk:
                return chunk, True
            self._spooling = False
            return [], False

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            timeout_ms = int(self.send_timeout_s * 1000)
            self._producer = await self.kafka.producer(
                request_timeout_ms=timeout_ms, linger_ms=5, **self._producer_overrides
            )
        return self._producer

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            chunk, from_spool = self._take()
            if not chunk:
                self._idle.set()
                self._wake.clear()
                if not self._buffer and not len(self.spool):
                    await self._wake.wait()
                continue
            self._inflight = len(chunk)
            self._current = (chunk, from_spool)
            ok = await self._send(chunk)
            self._current = None
            self._inflight = 0
            if from_spool:
                self.spool.advance(ok)
                metrics.SPOOL_DEPTH.labels(self.service).set(len(self.spool))
            elif ok < len(chunk):
                self._spill(chunk[ok:])
            if ok < len(chunk):
                self.failures += 1
                self._idle.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
            else:
                backoff = 0.1

    async def _send(self, chunk: list[SpoolRecord]) -> int:
        """Send a chunk; return the length of the acknowledged prefix."""
        try:
            producer = await self._ensure_producer()
            await self._topics.ensure({r.topic for r in chunk})
            futures = []
            for r in chunk:
                headers = [(REQUEST_ID_HEADER, r.request_id.encode())] if r.request_id else None
                futures.append(await producer.send(r.topic, r.value, key=r.key.encode(), headers=headers))
            results = await asyncio.gather(*futures, return_exceptions=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.warning("log stream: broker unavailable, spooling", error=repr(exc), spooled=len(self.spool))
            await self._drop_producer()
            return 0
        ok = 0
        for r, res in zip(chunk, results, strict=True):
            if isinstance(res, BaseException):
                break
            ok += 1
            if (
                r.event_id is not None
                and (fut := self._waiters.get(r.event_id)) is not None
                and not fut.done()
            ):
                fut.set_result(Position(res.topic, res.partition, res.offset))
        self.sent += ok
        metrics.SENT.labels(self.service).inc(ok)
        if ok < len(chunk):
            err = next(res for res in results if isinstance(res, BaseException))
            _log.warning("log stream: send failed, spooling", error=repr(err), failed=len(chunk) - ok)
            await self._drop_producer()
        return ok

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.kafka.release(producer), 2.0)
