"""The base NATS client: connection with reconnects, the default timeout, subject namespacing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from onair.clients.base import Lifecycle
from onair.config import NatsSettings, timeouts
from onair.logging import current_request_id

Callback = Callable[[], Awaitable[None]]
ErrorCallback = Callable[[Exception], Awaitable[None]]
_nats_logger = logging.getLogger("nats.aio.client")

REQUEST_ID_HEADER = "X-Request-ID"


def with_request_id(headers: dict[str, str] | None) -> dict[str, str] | None:
    """``headers`` plus ``X-Request-ID`` from the logging context (unchanged when there is none)."""
    rid = current_request_id()
    if rid is None or (headers is not None and REQUEST_ID_HEADER in headers):
        return headers
    return {**headers, REQUEST_ID_HEADER: rid} if headers else {REQUEST_ID_HEADER: rid}


class NatsClient(Lifecycle):
    """Wraps ``nats.aio.client.Client``.

    ``subject("chat", room)`` -> ``"<prefix>.chat.<room>"``. Disconnect/reconnect callbacks can be
    registered by narrow modules (the fan-out bridge turns a reconnect into a gap marker).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str = "onair",
        subject_prefix: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        settings = NatsSettings()
        self.url = url or settings.nats_url
        self.name = name
        self.prefix = settings.nats_subject_prefix if subject_prefix is None else subject_prefix
        self.timeout_s = timeout_s if timeout_s is not None else timeouts().default_timeout_s
        self._nc: Client | None = None
        self._on_disconnect: list[Callback] = []
        self._on_reconnect: list[Callback] = []
        self._on_error: list[ErrorCallback] = []

    def subject(self, *parts: object) -> str:
        joined = ".".join(str(p) for p in parts)
        return f"{self.prefix}.{joined}" if self.prefix else joined

    def on_disconnect(self, cb: Callback) -> None:
        self._on_disconnect.append(cb)

    def on_reconnect(self, cb: Callback) -> None:
        self._on_reconnect.append(cb)

    def on_error(self, cb: ErrorCallback) -> None:
        """Also told of nats-py's asynchronous errors (e.g. ``SlowConsumerError``: a message dropped)."""
        self._on_error.append(cb)

    async def _disconnected(self) -> None:
        for cb in self._on_disconnect:
            await cb()

    async def _reconnected(self) -> None:
        for cb in self._on_reconnect:
            await cb()

    async def _errored(self, exc: Exception) -> None:
        _nats_logger.error("nats: encountered error", exc_info=exc)  # what nats-py does by default
        for cb in self._on_error:
            await cb(exc)

    async def start(self) -> None:
        if self._nc is not None:
            return
        self._nc = await nats.connect(
            self.url,
            name=self.name,
            connect_timeout=timeouts().connect_timeout_s,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            ping_interval=5,
            max_outstanding_pings=2,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
            error_cb=self._errored,
            allow_reconnect=True,
        )

    @property
    def raw(self) -> Client:
        if self._nc is None:
            raise RuntimeError("NatsClient not started: call await client.start() or use 'async with'")
        return self._nc

    def jetstream(self) -> JetStreamContext:
        return self.raw.jetstream(timeout=self.timeout_s)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        """Publish; the current request id (if any) travels as the ``X-Request-ID`` header."""
        await self.raw.publish(subject, data, headers=with_request_id(headers))

    async def js_publish(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None, *, stream: str | None = None
    ) -> Any:
        """Publish to JetStream and wait for the stream's ack (``PubAck``: stream and sequence)."""
        return await self.jetstream().publish(subject, data, headers=with_request_id(headers), stream=stream)

    async def subscribe(
        self, subject: str, cb: Callable[[Msg], Awaitable[None]] | None = None, **kwargs: Any
    ) -> Subscription:
        return await self.raw.subscribe(subject, cb=cb, **kwargs)

    async def request(self, subject: str, data: bytes, timeout_s: float | None = None) -> Msg:
        return await self.raw.request(subject, data, timeout=timeout_s or self.timeout_s)

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc = self._nc, None
            if nc.is_connected:
                try:
                    await nc.drain()
                except Exception:  # pragma: no cover - best effort at shutdown
                    await nc.close()
            else:
                await nc.close()
