"""Serve a fan-out subscription over a WebSocket (Starlette/FastAPI ``WebSocket``).

Every frame is JSON text: ``{"type": "message", ...}`` per entry (encoded once per message and
shared by all connections), ``{"type": "gap", "missed": n, "reason": ...}`` where entries were lost,
``{"type": "ping"}`` as a heartbeat after ``heartbeat_s`` without traffic. Three tasks per
connection: the sender walks the cursor, the receiver notices the client leaving, the heartbeat
keeps idle connections alive; when one ends, the others are cancelled and the cursor is closed.

The slow-client policy is the one of :mod:`onair.fanout.sse`: ``"skip"`` sends the gap and carries
on, ``"disconnect"`` sends it and closes the socket (code 1008 with reason ``slow client``),
counted in ``onair_fanout_slow_client_disconnects_total{transport="ws"}``. ``send_timeout_s``
closes a connection whose single write blocks that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from onair.fanout import metrics
from onair.fanout.log import Gap, Subscription
from onair.fanout.sse import SlowClientPolicy

T = TypeVar("T")

PING = '{"type":"ping"}'


def default_ws_encode(item: Any) -> str:
    """``item.ws_text()`` when it has one (encoded once), else ``{"type": "message", "data": str}``."""
    text = getattr(item, "ws_text", None)
    if text is not None:
        return text()
    return orjson.dumps({"type": "message", "data": item}, default=str).decode()


def gap_text(gap: Gap) -> str:
    return orjson.dumps({"type": "gap", "missed": gap.missed, "reason": gap.reason}).decode()


class _SlowClient(Exception):
    pass


async def serve_websocket(
    websocket: WebSocket,
    sub: Subscription[T],
    *,
    encode: Callable[[T], str] = default_ws_encode,
    heartbeat_s: float = 15.0,
    slow_client: SlowClientPolicy = "skip",
    max_lag: int | None = None,
    send_timeout_s: float | None = None,
    batch: int = 512,
    accept: bool = True,
    encode_gap: Callable[[Gap], str] = gap_text,
    initial: Sequence[str] = (),
) -> None:
    """Accept ``websocket`` (unless already accepted) and stream ``sub`` until either side ends.

    ``initial`` frames are sent first (e.g. the gap a resuming client has to be told about);
    ``encode_gap`` makes the frame of a gap."""
    if accept:
        await websocket.accept()
    last_send = time.monotonic()
    lock = asyncio.Lock()
    view = sub.log.view(encode, encode_gap)  # each entry encoded once, shared by every connection

    async def send(text: str) -> None:
        nonlocal last_send
        async with lock:
            if send_timeout_s is None:
                await websocket.send_text(text)
            else:
                try:
                    async with asyncio.timeout(send_timeout_s):
                        await websocket.send_text(text)
                except TimeoutError:
                    raise _SlowClient from None
            last_send = time.monotonic()

    async def sender() -> None:
        for text in initial:
            await send(text)
        while await sub.wait():
            if max_lag is not None and sub.lag > max_lag:
                await send(encode_gap(Gap(sub.skip_to_head(), "slow-client")))
                if slow_client == "disconnect":
                    raise _SlowClient
                continue
            behind, texts = sub.drain_encoded(view, batch)
            if behind is not None:
                await send(encode_gap(behind))
                if slow_client == "disconnect":
                    raise _SlowClient
            for text in texts:
                await send(text)
        # The log was closed: say goodbye normally.
        await websocket.close(1000)

    async def receiver() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(max(0.0, last_send + heartbeat_s - time.monotonic()))
            if time.monotonic() - last_send >= heartbeat_s:
                await send(PING)

    tasks = [asyncio.create_task(sender()), asyncio.create_task(receiver())]
    if heartbeat_s > 0:
        tasks.append(asyncio.create_task(heartbeat()))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if isinstance(exc, _SlowClient):
                metrics.slow_client_disconnect("ws")
                if websocket.application_state == WebSocketState.CONNECTED:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(1.0):
                            await websocket.close(1008, "slow client")
            elif exc is not None and not isinstance(exc, WebSocketDisconnect | OSError | RuntimeError):
                raise exc
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sub.close()
