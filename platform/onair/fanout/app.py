"""A small ASGI app serving fan-out topics over SSE and WebSocket, and a helper to run it in-loop.

``create_app(source)`` routes ``GET /sse/{topic}`` and ``WS /ws/{topic}``; ``source(topic, last)``
returns a new :class:`Subscription` (``bridge_source(bridge, subject_of)`` builds one on a
:class:`FanoutBridge`). Query parameters: ``last`` (replay up to n retained entries) and ``policy``
(``skip`` or ``disconnect``, the slow-client policy; the app's default otherwise).

``running_server(app)`` runs uvicorn inside the current event loop on a free loopback port and
yields its base URL (tests, the benchmark).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, WebSocket
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from onair.fanout.bridge import FanoutBridge
from onair.fanout.log import Subscription
from onair.fanout.sse import SlowClientPolicy, SSEStream, sse_response
from onair.fanout.ws import serve_websocket

Source = Callable[[str, int], Awaitable[Subscription[Any]]]


def bridge_source(bridge: FanoutBridge, subject_of: Callable[[str], str]) -> Source:
    """Topics of the app -> NATS subjects of the bridge (``subject_of("room1")``)."""

    async def source(topic: str, last: int) -> Subscription[Any]:
        return await bridge.subscribe(subject_of(topic), last=last)

    return source


def create_app(
    source: Source,
    *,
    heartbeat_s: float = 15.0,
    policy: SlowClientPolicy = "skip",
    max_lag: int | None = None,
    send_timeout_s: float | None = None,
    fast_sse: bool = False,
) -> ASGIApp:
    """The FastAPI app; with ``fast_sse`` wrapped so that ``GET /sse/...`` bypasses the framework
    and is served by :class:`SSEStream` (``send_timeout_s`` then does not apply to SSE)."""
    app = FastAPI(title="onair fan-out")

    @app.get("/sse/{topic}")
    async def sse(topic: str, last: int = 0, policy: SlowClientPolicy | None = None) -> Response:
        sub = await source(topic, last)
        return sse_response(
            sub,
            heartbeat_s=heartbeat_s,
            slow_client=policy or default_policy,
            max_lag=max_lag,
            send_timeout_s=send_timeout_s,
        )

    @app.websocket("/ws/{topic}")
    async def ws(
        websocket: WebSocket, topic: str, last: int = 0, policy: SlowClientPolicy | None = None
    ) -> None:
        sub = await source(topic, last)
        await serve_websocket(
            websocket,
            sub,
            heartbeat_s=heartbeat_s,
            slow_client=policy or default_policy,
            max_lag=max_lag,
            send_timeout_s=send_timeout_s,
        )

    default_policy = policy
    if not fast_sse:
        return app
    return FastSSE(app, source, heartbeat_s=heartbeat_s, policy=policy, max_lag=max_lag)


class FastSSE:
    """ASGI wrapper: ``GET /sse/{topic}`` straight to :class:`SSEStream`, the rest to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        source: Source,
        *,
        heartbeat_s: float,
        policy: SlowClientPolicy,
        max_lag: int | None,
    ) -> None:
        self.app = app
        self.source = source
        self.heartbeat_s = heartbeat_s
        self.policy: SlowClientPolicy = policy
        self.max_lag = max_lag

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "GET" or not path.startswith("/sse/"):
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode())
        policy = query.get("policy", [self.policy])[0]
        try:
            last = int(query.get("last", ["0"])[0])
        except ValueError:
            last = -1
        topic = path[len("/sse/") :]
        if policy not in ("skip", "disconnect") or last < 0 or not topic or "/" in topic:
            await PlainTextResponse("bad request", status_code=400)(scope, receive, send)
            return
        sub = await self.source(topic, last)
        stream = SSEStream(
            sub,
            heartbeat_s=self.heartbeat_s,
            slow_client=policy,
            max_lag=self.max_lag,
        )
        await stream(scope, receive, send)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def running_server(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, **config: Any
) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn in this loop; yield ``http://host:port``; stop it on exit.

    ``lifespan="on"`` runs the app's lifespan (start-up fails the ``with``; shutdown on exit).
    """
    import uvicorn

    options: dict[str, Any] = {
        "log_level": "warning",
        "lifespan": "off",
        "timeout_graceful_shutdown": 1,
        **config,
    }
    cfg = uvicorn.Config(app, host=host, port=port or free_port(), log_config=None, **options)
    server = uvicorn.Server(cfg)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(60):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped during start-up (see the log for the lifespan error)")
                await asyncio.sleep(0.01)
        yield f"http://{host}:{cfg.port}"
    finally:
        server.should_exit = True
        try:
            async with asyncio.timeout(5):
                await task
        except TimeoutError:  # pragma: no cover - stuck connections
            server.force_exit = True
            task.cancel()
