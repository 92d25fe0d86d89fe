"""Watching a room: ``GET /chat/{channel}/sse`` (Server-Sent Events) and ``WS /chat/{channel}/ws``.

Anonymous viewers are welcome. A joiner gets the last ``history`` events, then every new one. A
reconnecting viewer says which event it saw last (SSE: the ``Last-Event-ID`` header a browser
sends by itself, or ``?last_event_id=``; WebSocket: ``?last_event_id=`` or a first message
``{"last_event_id": n}``) and resumes right after it, or first gets ``{"type":"gap", "missed":
n, ...}`` when that event is older than what the room retains (see :mod:`..resume`). Frames are
encoded once per event for every viewer of the process, and written by the fan-out's pusher
(:class:`onair.fanout.sse.SSEStream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Query, WebSocket
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from onair.fanout.sse import SSEStream
from onair.fanout.ws import serve_websocket
from onair.logging import request_context
from onair.service import ApiError, responses
from onair.service.middleware import (
    DURATION,
    REQUEST_ID_HEADER,
    REQUESTS,
    new_request_id,
    valid_request_id,
)
from onair_services.chat import metrics
from onair_services.chat.resume import Start, sse_frame, sse_gap, start_for, ws_gap, ws_text
from onair_services.chat.runtime import ChatRuntime, chat_of, chat_of_request, chat_of_scope
from onair_services.chat.schemas import Channel

router = APIRouter(prefix="/chat", tags=["chat"])
Chat = Annotated[ChatRuntime, Depends(chat_of_request)]


class EventStream(Response):
    """A response that is an ASGI app of its own (the fan-out's SSE stream), for FastAPI routes."""

    media_type = "text/event-stream"

    def __init__(self, app: ASGIApp | None = None, status_code: int = 200) -> None:
        self.app = app
        self.status_code = status_code
        self.background: BackgroundTask | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)


def last_seen(query: int | None, header: str | None) -> int | None:
    if query is not None:
        return query
    if header is None or header == "":
        return None
    try:
        value = int(header)
    except ValueError:
        value = -1
    if value < 0:
        raise ApiError(
            422,
            "invalid_request",
            "header.last-event-id: must be an event number (a non-negative integer)",
            fields=[{"field": "header.last-event-id", "message": "must be a non-negative integer"}],
        )
    return value


def note_gap(start: Start) -> None:
    if start.gap is not None:
        metrics.RESUME_GAPS.labels(str(start.gap["reason"])).inc()


async def room_stream(
    chat: ChatRuntime, channel: str, seen: int | None, headers: Sequence[tuple[bytes, bytes]] = ()
) -> SSEStream:
    """The SSE stream of ``channel`` for a viewer that last saw event ``seen`` (404: no such room)."""
    await chat.rooms.require(channel)
    flog = await chat.feeds.room(channel)
    start = start_for(flog, seen, chat.settings.history)
    note_gap(start)
    sub = flog.subscribe(start=start.cursor)
    chat.viewers.join(channel, "sse")

    def closed() -> None:
        chat.viewers.leave(channel, "sse")
        chat.feeds.touch(flog)

    return SSEStream(
        sub,
        encode=sse_frame,
        encode_gap=sse_gap,
        initial=start.sse_initial(),
        heartbeat_s=chat.settings.heartbeat_s,
        on_close=closed,
        headers=headers,
    )


@router.get(
    "/{channel}/sse",
    response_class=EventStream,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "Room events"},
        **responses(404),
    },
    summary="Watch the room (Server-Sent Events)",
)
async def room_sse(
    channel: Channel,
    chat: Chat,
    last_event_id: Annotated[
        int | None, Query(ge=0, description="Resume after this event (instead of Last-Event-ID)")
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID", include_in_schema=True)] = None,
) -> Response:
    """``id: <n>`` + ``data: <event JSON>`` per event; ``event: gap`` + ``data: {"type":"gap",
    "missed", "reason"}`` where events were lost; ``: ping`` comments when idle."""
    return EventStream(await room_stream(chat, channel, last_seen(last_event_id, last_event_id_header)))


class FastRoomSSE:
    """``GET /chat/{channel}/sse`` served ahead of the framework.

    A stream lives as long as its viewer and keeps, for that long, every layer it went through:
    middleware frames, exit stacks, router frames, dependency resolution, request objects; and
    every write of it goes down through each layer's ``send`` wrapper. With thousands of viewers
    per process that is most of what a viewer costs in memory, and a good part of the CPU of a
    fan-out sweep. So this outermost layer serves well-formed room streams itself, doing what the
    skeleton's request middleware does for them (request id bound and returned, the request
    metrics under the route's template); anything else, or anything that fails before the stream
    starts, goes on to the framework and :func:`room_sse`, whose validation and error handlers
    answer it as documented.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        match = _PATH.fullmatch(scope["path"])
        seen = _fast_params(scope) if match else _SLOW
        if match is None or seen is _SLOW:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _request_id(scope)
        status = 200
        with request_context(rid):
            try:
                stream: ASGIApp = await room_stream(
                    chat_of_scope(scope),
                    match[1],
                    seen,  # type: ignore[arg-type]
                    headers=[(REQUEST_ID_HEADER, rid.encode())],
                )
            except ApiError as exc:
                status = exc.status
                error = exc.response()
                error.headers["x-request-id"] = rid
                stream = error
            except Exception:  # a backend is down: the framework's route and handlers answer it
                await self.app(scope, receive, send)
                return
            DURATION.labels(self.service, ROOM_SSE).observe(time.perf_counter() - started)
            try:
                await stream(scope, receive, send)
            finally:
                REQUESTS.labels(self.service, ROOM_SSE, "GET", str(status)).inc()


ROOM_SSE = "/chat/{channel}/sse"


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return valid_request_id(value.decode("latin-1")) or new_request_id()
    return new_request_id()


_SLOW = object()
_PATH = re.compile(r"/chat/([a-z0-9_]{3,32})/sse")


def _fast_params(scope: Scope) -> int | object | None:
    """``last_event_id`` from the query or the header when plainly valid, else ``_SLOW``."""
    query: bytes = scope.get("query_string", b"")
    if query:
        key, _, value = query.partition(b"=")
        if key != b"last_event_id" or not value.isdigit():
            return _SLOW
        return int(value)
    seen: int | None = None
    for name, value in scope["headers"]:
        if name == b"last-event-id" and value:
            if not value.isdigit():
                return _SLOW
            seen = int(value)
    return seen


def install_fast_sse(app: FastAPI, service: str) -> None:
    """Serve room streams through :class:`FastRoomSSE`, ahead of ``app``'s middleware."""
    build = app.build_middleware_stack

    def build_with_fast_sse() -> ASGIApp:
        return FastRoomSSE(build(), service)

    app.build_middleware_stack = build_with_fast_sse  # type: ignore[method-assign]


@router.websocket("/{channel}/ws")
async def room_ws(
    websocket: WebSocket,
    channel: str,
    last_event_id: Annotated[int | None, Query(ge=0)] = None,
) -> None:
    """Room events as JSON text frames; gaps as ``{"type":"gap", ...}``; ``{"type":"ping"}`` when
    idle. Unknown room: the handshake is refused with 404."""
    chat = chat_of(websocket)
    room = await chat.rooms.get(channel)
    if room is None:
        body = {"error": "not_found", "detail": f"no chat room {channel!r} (no such channel)"}
        try:
            await websocket.send_denial_response(JSONResponse(body, 404))
        except RuntimeError:  # the server has no denial responses: close with an application code
            await websocket.close(4404, "unknown room")
        return
    await websocket.accept()
    seen = last_event_id
    if seen is None and chat.settings.ws_hello_s > 0:
        seen = await _hello(websocket, chat.settings.ws_hello_s)
    flog = await chat.feeds.room(channel)
    start = start_for(flog, seen, chat.settings.history)
    note_gap(start)
    sub = flog.subscribe(start=start.cursor)
    chat.viewers.join(channel, "ws")
    try:
        await serve_websocket(
            websocket,
            sub,
            encode=ws_text,
            encode_gap=ws_gap,
            initial=start.ws_initial(),
            heartbeat_s=chat.settings.heartbeat_s,
            accept=False,
        )
    finally:
        chat.viewers.leave(channel, "ws")
        chat.feeds.touch(flog)


async def _hello(websocket: WebSocket, wait_s: float) -> int | None:
    """The client's first message, if it sends one in time: ``{"last_event_id": n}`` (n or null)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait_s):
            message: Any = await websocket.receive_text()
            try:
                value = orjson.loads(message).get("last_event_id")
            except (orjson.JSONDecodeError, AttributeError):
                value = None
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
    return None
