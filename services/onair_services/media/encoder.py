"""A simulated encoder: the client side of ``WS /ingest/{channel}`` (``onair encoder`` runs it).

It connects, sends its hello (publish key and source), waits for ``ready``, then sends a heartbeat
every ``heartbeat_interval_s`` the server announced, until it is told to stop (``stop`` event,
``seconds``), or the server ends the session. A refusal raises :class:`EncoderRefused` with the
server's close code and reason; the end of a session is an :class:`EncoderResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

REFUSAL_CODES = frozenset({4400, 4403, 4408, 4409, 1009, 1011})


class EncoderRefused(Exception):
    """The ingest turned the encoder away before the session started."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class EncoderResult:
    """How a session ended: ``stopped`` (we stopped it) or the server's close code and reason."""

    session_id: str
    ready: dict[str, Any]
    stopped: bool = False
    code: int | None = None
    reason: str = ""
    heartbeats_sent: int = 0
    heartbeats_acked: int = 0
    rtt_ms: list[float] = field(default_factory=list)


@dataclass
class EncoderStats:
    """What a display shows while the session runs (updated in place)."""

    started: float = field(default_factory=time.monotonic)
    heartbeats_sent: int = 0
    heartbeats_acked: int = 0
    last_rtt_ms: float | None = None


def ingest_url(base: str, channel: str) -> str:
    return f"{base.rstrip('/')}/{channel}"


async def run_encoder(
    url: str,
    channel: str,
    key: str,
    source: dict[str, Any],
    *,
    seconds: float | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    stats: EncoderStats | None = None,
    open_timeout_s: float = 10.0,
) -> EncoderResult:
    """Play an encoder on ``url`` (``ws://host:port/ingest``) for ``channel``.

    Raises :class:`EncoderRefused` when the server refuses the hello, ``OSError`` (or a
    ``websockets`` error) when it cannot be reached.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    stop = stop or asyncio.Event()
    stats = stats or EncoderStats()
    async with connect(ingest_url(url, channel), open_timeout=open_timeout_s, max_size=1 << 20) as ws:
        await ws.send(orjson.dumps({"type": "hello", "key": key, "source": source}).decode())
        try:
            ready = orjson.loads(await asyncio.wait_for(ws.recv(), open_timeout_s))
        except ConnectionClosed as closed:
            rcvd = closed.rcvd
            raise EncoderRefused(
                rcvd.code if rcvd else None, (rcvd.reason if rcvd else "") or "connection closed"
            ) from None
        if not isinstance(ready, dict) or ready.get("type") != "ready":
            raise EncoderRefused(None, f"unexpected answer to hello: {str(ready)[:100]}")
        if on_ready is not None:
            on_ready(ready)
        result = EncoderResult(session_id=str(ready.get("session_id", "")), ready=ready)
        interval = float(ready.get("heartbeat_interval_s", 2.0))
        sent_at: dict[int, float] = {}

        async def receive() -> None:
            async for raw in ws:
                message = orjson.loads(raw)
                if isinstance(message, dict) and message.get("type") == "heartbeat_ack":
                    n = message.get("n")
                    at = sent_at.pop(n, None) if isinstance(n, int) else None
                    stats.heartbeats_acked += 1
                    if at is not None:
                        stats.last_rtt_ms = (time.monotonic() - at) * 1000
                        result.rtt_ms.append(stats.last_rtt_ms)

        async def beat() -> None:
            n = 0
            while True:
                n += 1
                sent_at[n] = time.monotonic()
                await ws.send(orjson.dumps({"type": "heartbeat", "n": n}).decode())
                stats.heartbeats_sent += 1
                await asyncio.sleep(interval)

        deadline = None if seconds is None else time.monotonic() + seconds
        receiver = asyncio.ensure_future(receive())
        beater = asyncio.ensure_future(beat())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait(
                {receiver, beater, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if receiver in done or beater in done:  # the server closed the connection
                result.code = ws.close_code
                result.reason = ws.close_reason or "connection closed"
            else:
                result.stopped = True
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(orjson.dumps({"type": "bye"}).decode())
                await ws.close(1000, "encoder stopped")
                result.code, result.reason = 1000, "stopped"
        finally:
            for task in (receiver, beater, stopper):
                task.cancel()
            for task in (receiver, beater, stopper):
                with contextlib.suppress(BaseException):
                    await task
        result.heartbeats_sent = stats.heartbeats_sent
        result.heartbeats_acked = stats.heartbeats_acked
        return result
