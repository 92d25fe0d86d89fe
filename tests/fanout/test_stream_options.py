"""The stream options services use: frames sent first (``initial``), their own gap encoding
(``encode_gap``) and a close callback, over SSEStream and the WebSocket endpoint on real uvicorn."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI, WebSocket
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import connect as ws_connect

from onair.fanout import FanoutLog, Gap
from onair.fanout.app import running_server
from onair.fanout.sse import SSEStream
from onair.fanout.ws import serve_websocket


def lost_frame(gap: Gap) -> bytes:
    return b"event: lost\ndata: %d\n\n" % (gap.missed or 0)


async def test_sse_stream_sends_initial_frames_its_own_gaps_and_calls_on_close() -> None:
    log: FanoutLog[str] = FanoutLog(capacity=4, name="opts")
    for i in range(10):
        log.publish(f"m{i}")
    closed = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        sub = log.subscribe(start=0)  # 6 entries behind the window
        stream = SSEStream(sub, encode_gap=lost_frame, initial=[b": hello\n\n"], on_close=closed.set)
        await stream(scope, receive, send)

    async with running_server(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        async with http.stream("GET", "/") as resp:
            body = b""
            async for chunk in resp.aiter_bytes():
                body += chunk
                if b"m9" in body:
                    break
        assert body == b": hello\n\nevent: lost\ndata: 6\n\ndata: m6\n\ndata: m7\n\ndata: m8\n\ndata: m9\n\n"
        await asyncio.wait_for(closed.wait(), 5)
    assert log.subscribers == 0


async def test_websocket_sends_initial_frames_and_its_own_gaps() -> None:
    log: FanoutLog[str] = FanoutLog(capacity=4, name="opts-ws")
    for i in range(10):
        log.publish(f"m{i}")
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await serve_websocket(
            websocket,
            log.subscribe(start=0),
            encode=lambda item: f"<{item}>",
            encode_gap=lambda gap: f"lost {gap.missed}",
            initial=["hello", "there"],
        )

    async with running_server(app) as base, ws_connect(base.replace("http", "ws") + "/ws") as client:
        got = [await asyncio.wait_for(client.recv(), 5) for _ in range(7)]
    assert got == ["hello", "there", "lost 6", "<m6>", "<m7>", "<m8>", "<m9>"]
