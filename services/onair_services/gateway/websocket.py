"""WebSocket pass-through: the client's socket and an upstream socket, piped both ways.

Only paths the route table opens for WebSockets (``Route.websocket``: ``/ingest/<channel>``,
``/chat/<room>/ws``) are accepted. Before the client's handshake is answered, the gateway checks
what it checks for HTTP (per-IP limit, the token from ``Authorization`` or ``?access_token=``,
roles, per-user limit) and the ``Origin`` (same host, or one of ``ONAIR_GATEWAY_CORS_ORIGINS``:
a page from another site must not open a socket with the visitor's credentials), then opens the
upstream socket with the same subprotocols, the signed identity and the request id. A refusal is
an HTTP answer with the JSON error body (the ASGI WebSocket denial response), or a close with
code 1008 where the server cannot send one.

Frames are relayed as they come, text as text and binary as binary, each way independently;
a close on either side closes the other with the same code. A message larger than the route's
``ws_max_message`` closes the socket with 1009.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from starlette.types import Receive, Scope, Send

from onair_services.gateway.authn import Refusal
from onair_services.gateway.proxy import REQUEST_DROP, _take_token

if TYPE_CHECKING:
    from onair_services.gateway.proxy import Gateway

#: Handshake headers the gateway sets itself (plus the hop-by-hop ones of HTTP).
_WS_DROP = REQUEST_DROP | {
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-extensions",
    b"sec-websocket-protocol",
    b"origin",
}


async def deny(scope: Scope, send: Send, status: int, code: str, detail: str, **extra: Any) -> None:
    """Refuse the handshake with an HTTP answer (or a 1008 close when the server cannot)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = orjson.dumps({"error": code, "detail": detail, **extra})
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": code})


def _origin_allowed(origin: bytes | None, host: bytes | None, allowed: list[str]) -> bool:
    if origin is None:
        return True  # not a browser: the token is the credential
    text = origin.decode("latin-1")
    if "*" in allowed or text in allowed:
        return True
    return host is not None and text.split("://", 1)[-1] == host.decode("latin-1")


async def proxy_websocket(gateway: Gateway | None, scope: Scope, receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    if gateway is None:
        await deny(scope, send, 503, "unavailable", "the gateway is starting")
        return
    path: str = scope["path"]
    route = gateway.table.match(path)
    if route is None or not route.allows_websocket(path):
        await deny(scope, send, 404, "not_found", f"no WebSocket route {path}")
        return
    scope["route"] = gateway.labels[route.prefix]
    upstream = gateway.upstreams[route.upstream]
    rid: str = scope["state"]["request_id"]
    authorization = origin = host = None
    protocols: list[str] = []
    forward: list[tuple[str, str]] = []
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
            if route.forward_authorization:
                forward.append(("Authorization", value.decode("latin-1")))
        elif name == b"origin":
            origin = value
        elif name == b"host":
            host = value
        elif name == b"sec-websocket-protocol":
            protocols += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
        elif name not in _WS_DROP:
            forward.append((name.decode("latin-1"), value.decode("latin-1")))
    if not _origin_allowed(origin, host, gateway.settings.cors_origins):
        await deny(scope, send, 403, "forbidden", "this origin may not open WebSockets here")
        return
    query: bytes = scope.get("query_string", b"")
    query_token = None
    client_ip = scope["client"][0] if scope.get("client") else "unknown"
    try:
        if query and b"access_token=" in query and gateway.settings.query_token:
            query, query_token = _take_token(query)
        await gateway.rate_limit(gateway.ip_policy, client_ip, [])
        token = gateway.token_of(route, authorization, query_token)
        caller = await gateway.auth.authenticate(route, "GET", token, rid)
        if caller is not None:
            await gateway.rate_limit(gateway.user_policy, caller.user_id, [])
            forward.append(("X-Onair-Identity", gateway.auth.identity_header(caller)))
    except Refusal as refusal:
        await deny(scope, send, refusal.status, refusal.code, refusal.detail, **(refusal.extra or {}))
        return
    forward += [("X-Request-ID", rid), ("X-Forwarded-For", client_ip)]
    raw_path: bytes = scope.get("raw_path") or path.encode()
    url = upstream.ws_base + raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    try:
        upstream.breaker.acquire()
    except ConnectionError:
        await deny(
            scope,
            send,
            503,
            "upstream_unavailable",
            f"{upstream.name} is unavailable",
            upstream=upstream.name,
        )
        return
    try:
        async with asyncio.timeout(route.timeout_s):
            socket = await gateway.session.ws_connect(
                url,
                headers=forward,
                protocols=protocols,
                max_msg_size=route.ws_max_message,
                autoping=True,
                compress=0,
            )
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status < 500:  # the upstream answered: it is alive, it just said no
            upstream.breaker.success()
        else:
            upstream.breaker.failure()
        await deny(
            scope,
            send,
            exc.status,
            "refused",
            f"{upstream.name} refused the WebSocket",
            upstream=upstream.name,
        )
        return
    except TimeoutError:
        upstream.breaker.failure()
        upstream.error("timeout")
        await deny(
            scope, send, 504, "upstream_timeout", f"{upstream.name} did not answer", upstream=upstream.name
        )
        return
    except aiohttp.ClientError:
        upstream.breaker.failure()
        upstream.error("connect")
        await deny(
            scope,
            send,
            503,
            "upstream_unavailable",
            f"{upstream.name} cannot be reached",
            upstream=upstream.name,
        )
        return
    except BaseException:
        upstream.breaker.release()
        raise
    upstream.breaker.success()
    async with socket:
        await send({"type": "websocket.accept", "subprotocol": socket.protocol})
        await _pipe(socket, receive, send, route.ws_max_message)


async def _pipe(
    socket: aiohttp.ClientWebSocketResponse, receive: Receive, send: Send, max_message: int
) -> None:
    close: dict[str, Any] = {"code": 1000}

    async def client_to_upstream() -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                payload = text if text is not None else message.get("bytes") or b""
                if len(payload) > max_message:
                    close["code"] = 1009
                    close["to_client"] = True
                    await socket.close(code=1009, message=b"message too big")
                    return
                if text is not None:
                    await socket.send_str(text)
                else:
                    await socket.send_bytes(payload)
            elif kind == "websocket.disconnect":
                await socket.close(code=int(message.get("code") or 1000))
                return

    async def upstream_to_client() -> None:
        async for message in socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                await send({"type": "websocket.send", "text": message.data})
            elif message.type == aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": message.data})
            elif message.type == aiohttp.WSMsgType.ERROR:
                close["code"] = 1011
                break
        close["code"] = socket.close_code or close["code"]
        close["to_client"] = True

    tasks = [asyncio.ensure_future(client_to_upstream()), asyncio.ensure_future(upstream_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
    if close.get("to_client"):
        code = int(close["code"])
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": code if 1000 <= code < 5000 else 1011})
