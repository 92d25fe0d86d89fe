"""``WS /ingest/{channel}``: the encoder's side of the simulated ingest (protocol in docs/media.md).

1. The server accepts the connection; the encoder's first message, within ``hello_timeout_s``, is
   ``{"type": "hello", "key": "<publish key>", "source": {"height": 1080, "fps": 60, "codec":
   "h264", "bitrate_kbps": 6000}}`` (the key may instead come in an ``X-Onair-Publish-Key``
   header; it is never put in the URL, which ends up in access logs).
2. Refusals close the connection with a code and a one-line reason, and log nothing as ``open``:
   4400 bad hello/channel, 4403 ``invalid publish key``, 4408 hello timeout, 4409 already live.
3. Accepted: ``{"type": "ready", "session_id", "renditions", "heartbeat_interval_s",
   "heartbeat_timeout_s"}``. Every message from the encoder counts as a sign of life;
   ``{"type": "heartbeat", "n": 7}`` is answered with ``{"type": "heartbeat_ack", "n": 7, "ts_ms"}``,
   ``{"type": "bye"}`` ends the session.
4. The session ends with a ``close`` event whose reason says why: ``encoder_closed`` (the encoder
   left), ``heartbeat_timeout`` (silent for ``heartbeat_timeout_s``; close code 4408),
   ``shutdown`` (the server stops: uvicorn's 1012), ``stopped``/``lease_expired`` (ended
   elsewhere; close code 4410 with that reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from onair.service import Service
from onair_services.media.ladder import Source
from onair_services.media.live import (
    BAD_REQUEST,
    ENDED_ELSEWHERE,
    REFUSED,
    TIMEOUT,
    LocalSession,
    Refused,
    SessionManager,
)

router = APIRouter()

KEY_HEADER = "x-onair-publish-key"
CHANNEL_RE = re.compile(r"^[a-z0-9_]{3,32}$")
SERVER_RESTART = 1012  # what uvicorn sends every WebSocket when the server shuts down
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011


class Hello(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern="^hello$")
    key: str | None = Field(default=None, max_length=256)
    source: Source = Field(default_factory=Source)


def _reason_text(errors: list[Any]) -> str:
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "message"
    return f"bad hello: {where}: {first.get('msg', 'invalid')}"[:120]


async def _hello(ws: WebSocket, timeout_s: float, max_bytes: int) -> Hello:
    try:
        async with asyncio.timeout(timeout_s):
            message = await ws.receive()
    except TimeoutError:
        raise Refused(TIMEOUT, "hello_timeout: no hello message in time", "hello_timeout") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    raw = message.get("text")
    if raw is None:
        raise Refused(BAD_REQUEST, "bad hello: expected a JSON text message", "bad_hello")
    if len(raw) > max_bytes:
        raise Refused(MESSAGE_TOO_BIG, "hello too big", "bad_hello")
    try:
        return Hello.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError:
        raise Refused(BAD_REQUEST, "bad hello: not JSON", "bad_hello") from None
    except ValidationError as exc:
        raise Refused(BAD_REQUEST, _reason_text(exc.errors()), "bad_hello") from None


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state == WebSocketState.CONNECTED and ws.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await ws.close(code, reason[:120])


@router.websocket("/ingest/{channel}")
async def ingest(websocket: WebSocket, channel: str) -> None:
    svc: Service = websocket.app.state.service
    manager: SessionManager = svc.state["sessions"]
    settings = manager.settings
    await websocket.accept()
    try:
        if not CHANNEL_RE.match(channel):
            raise Refused(BAD_REQUEST, "invalid channel name", "bad_channel")
        hello = await _hello(websocket, settings.hello_timeout_s, settings.max_message_bytes)
        key = hello.key or websocket.headers.get(KEY_HEADER)
        await manager.authenticate(channel, key)
        session = await manager.open(channel, hello.source, kind="encoder")
    except Refused as refused:
        REFUSED.labels(refused.label).inc()
        svc.log.info("encoder refused", channel=channel[:64], reason=refused.reason)
        await _close(websocket, refused.code, refused.reason)
        return
    except WebSocketDisconnect:
        return
    except Exception as exc:  # the database is away: the encoder should retry
        svc.log.warning("ingest unavailable", channel=channel[:64], error=repr(exc))
        await _close(websocket, INTERNAL_ERROR, "ingest unavailable; retry shortly")
        return
    try:
        await websocket.send_text(
            orjson.dumps(
                {
                    "type": "ready",
                    "session_id": session.id,
                    "channel": channel,
                    "renditions": [r.model_dump() for r in session.renditions],
                    "heartbeat_interval_s": settings.heartbeat_interval_s,
                    "heartbeat_timeout_s": settings.heartbeat_timeout_s,
                }
            ).decode()
        )
        reason, code = await _serve(websocket, session, manager)
    except asyncio.CancelledError:
        # the server's graceful period ran out while the session was open: it ends with the server
        await asyncio.shield(manager.close(session.id, "shutdown"))
        raise
    except Exception:  # the connection broke (a send to a vanished encoder)
        reason, code = "encoder_closed", None
    if code is not None:
        await _close(websocket, code, reason)
    await manager.close(session.id, reason)


async def _serve(ws: WebSocket, session: LocalSession, manager: SessionManager) -> tuple[str, int | None]:
    """Run the session until it ends; (close reason, close code to send or None)."""
    settings = manager.settings
    last_seen = time.monotonic()

    async def pump() -> tuple[str, int | None]:
        nonlocal last_seen
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code", 1000)
                return ("shutdown" if code == SERVER_RESTART else "encoder_closed"), None
            last_seen = time.monotonic()
            text = message.get("text")
            size = len(text) if text is not None else len(message.get("bytes") or b"")
            if size > settings.max_message_bytes:
                return "encoder_closed", MESSAGE_TOO_BIG
            if text is None:
                continue  # binary frames (media data, in a real ingest) are signs of life too
            message = _message(text)
            kind = message.get("type")
            if kind == "heartbeat":
                ack: dict[str, Any] = {"type": "heartbeat_ack", "ts_ms": int(time.time() * 1000)}
                if isinstance(message.get("n"), int):
                    ack["n"] = message["n"]
                await ws.send_text(orjson.dumps(ack).decode())
            elif kind == "bye":
                return "encoder_closed", 1000

    reader = asyncio.ensure_future(pump())
    waiting: set[asyncio.Future[Any]] = {reader, session.ended}
    try:
        while True:
            left = last_seen + settings.heartbeat_timeout_s - time.monotonic()
            if left <= 0:
                return "heartbeat_timeout", TIMEOUT
            done, _ = await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                return reader.result()
            if session.ended in done:
                reason = session.ended.result()
                return reason, (SERVER_RESTART if reason == "shutdown" else ENDED_ELSEWHERE)
    finally:
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader


def _message(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
