"""The proxy: a lean ASGI path from the client to the upstream and back.

The service skeleton routes its own paths (probes, metrics, the identity JWKS, OpenAPI); every
other request falls through to :class:`GatewayProxy` (the router's ``default``), already wrapped
by the skeleton's request middleware (request id, body limit, metrics, access log) and the
browser headers (``headers.py``). Per request, in order:

1. the route table (404 for an unknown path, 405 for a method the route does not take);
2. the per-IP rate limit, then authentication (``authn.py``), then the per-user rate limit;
3. the upstream request on a pooled aiohttp session (keep-alive, HTTP/1.1), behind the
   upstream's circuit breaker, with the route's timeout: the headers a client sent minus
   hop-by-hop ones, ``Authorization`` (except to auth), any client ``X-Onair-Identity`` and
   ``X-Forwarded-*``; plus ``X-Request-ID``, ``X-Forwarded-For/Proto/Host`` and the signed
   ``X-Onair-Identity``. The request body is streamed (a body that arrived whole is sent as is);
4. the answer streamed back: small bodies in one piece, large ones chunk by chunk, and
   ``text/event-stream`` chunk by chunk as it comes (no buffering; a client that leaves cancels
   the upstream request), with the ``RateLimit`` headers added.

Failures answer JSON naming the upstream: 503 ``upstream_unavailable`` (connection refused, or
the breaker is open: ``Retry-After``), 504 ``upstream_timeout``, 502 ``bad_gateway`` (the
upstream broke the exchange). GET/HEAD/OPTIONS without a streamed body are tried again (the
route's ``retries``) when the connection failed before any answer came.

httpx or aiohttp? The hop was measured with both (``python -m onair.bench.proxy_clients``):
aiohttp forwarded ~11x the requests of httpx at 16 concurrent connections; figures in
docs/gateway.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import aiohttp
import orjson
from multidict import CIMultiDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from yarl import URL

from onair.logging import get_logger
from onair.ratelimit import Decision, SharedRateLimiter
from onair.resilience import STATE_VALUES, CircuitBreaker, CircuitOpen
from onair_services.gateway.authn import Authenticator, Refusal, bearer_token
from onair_services.gateway.metrics import (
    BREAKER_OPENED,
    BREAKER_STATE,
    RATE_LIMITED,
    UPSTREAM_ERRORS,
    UPSTREAM_RETRIES,
    UPSTREAM_SECONDS,
)
from onair_services.gateway.settings import GatewaySettings
from onair_services.gateway.table import IDEMPOTENT, Route, RouteTable

log = get_logger("onair.gateway")

#: Request headers never forwarded as the client sent them (hop-by-hop, or set by the gateway).
REQUEST_DROP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"x-onair-identity",
        b"x-request-id",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
    }
)
#: Response headers never passed back (hop-by-hop, or set by the gateway's own server).
RESPONSE_DROP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"date",
        b"server",
        b"x-request-id",
    }
)
SMALL_BODY: Final = 64 * 1024
_DOT_SEGMENT: Final = re.compile(r"(^|/)\.\.?(/|$)")
_JSON: Final = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class RouteLabel:
    """Put in ``scope["route"]`` so the skeleton's metrics and access log name the table entry."""

    path: str


class ClientGone(Exception):
    """The client disconnected while its request body was being forwarded."""


async def respond(
    send: Send,
    status: int,
    code: str,
    detail: str,
    headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]] = (),
    **extra: Any,
) -> None:
    """Answer with the skeleton's error body ``{"error", "detail", ...}``."""
    body = orjson.dumps({"error": code, "detail": detail, **extra})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Upstream:
    """One upstream service: its base URL and its circuit breaker."""

    def __init__(self, name: str, base_url: str, settings: GatewaySettings) -> None:
        self.name = name
        self.base = base_url.rstrip("/")
        self.ws_base = "ws" + self.base[4:] if self.base.startswith("http") else self.base
        self.latency = UPSTREAM_SECONDS.labels(name)
        self.breaker = CircuitBreaker(
            name,
            consecutive_failures=settings.breaker_consecutive_failures,
            failure_ratio=settings.breaker_failure_ratio,
            min_calls=settings.breaker_min_calls,
            open_s=settings.breaker_open_s,
            on_change=self._changed,
        )
        BREAKER_STATE.labels(name).set(0)

    def _changed(self, breaker: CircuitBreaker, old: str, new: str) -> None:
        BREAKER_STATE.labels(self.name).set(STATE_VALUES[new])
        if new == "open":
            BREAKER_OPENED.labels(self.name).inc()
        log.warning("gateway.breaker", upstream=self.name, old=old, new=new)

    def error(self, kind: str) -> None:
        UPSTREAM_ERRORS.labels(self.name, kind).inc()


class Gateway:
    """The running parts of the proxy (built in the lifespan, one per process)."""

    def __init__(
        self,
        table: RouteTable,
        upstreams: dict[str, Upstream],
        settings: GatewaySettings,
        authenticator: Authenticator,
        limiter: SharedRateLimiter | None,
        session: aiohttp.ClientSession,
    ) -> None:
        self.table = table
        self.upstreams = upstreams
        self.settings = settings
        self.auth = authenticator
        self.limiter = limiter
        self.session = session
        self.labels = {r.prefix: RouteLabel(r.prefix) for r in table.routes}
        policies = limiter.policies if limiter is not None else {}
        self.ip_policy = "ip" if "ip" in policies else None
        self.user_policy = "user" if "user" in policies else None
        self.policy_header = ", ".join(p.header for p in policies.values()).encode()

    # -- shared by HTTP and WebSocket ------------------------------------------------------------
    async def rate_limit(self, policy: str | None, key: str, decisions: list[Decision]) -> None:
        """Count one hit; :class:`Refusal` 429 when over the limit."""
        if policy is None or self.limiter is None:
            return
        decision = await self.limiter.hit(policy, key)
        decisions.append(decision)
        if not decision.allowed:
            RATE_LIMITED.labels(policy).inc()
            raise Refusal(
                429,
                "rate_limited",
                f"too many requests ({decision.policy.limit} per {decision.policy.window_s} s "
                f"per {policy}); retry in {decision.retry_after_s} s",
                (
                    (b"retry-after", str(decision.retry_after_s).encode()),
                    *self.ratelimit_headers(decisions),
                ),
                {"policy": policy},
            )

    def ratelimit_headers(self, decisions: list[Decision]) -> tuple[tuple[bytes, bytes], ...]:
        if not decisions:
            return ()
        return (
            (b"ratelimit-policy", self.policy_header),
            (b"ratelimit", ", ".join(d.header for d in decisions).encode()),
        )

    def token_of(self, route: Route, authorization: bytes | None, query_token: str | None) -> str | None:
        if route.auth == "public":
            return None
        if authorization is not None and query_token is not None:
            raise Refusal(
                400, "bad_request", "send the access token once: in the Authorization header or the query"
            )
        return bearer_token(authorization) if query_token is None else query_token

    # -- HTTP --------------------------------------------------------------------------------------
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        route = self.table.match(path)
        if route is None:
            await respond(send, 404, "not_found", f"no route {path}")
            return
        scope["route"] = self.labels[route.prefix]
        if "/." in path and _DOT_SEGMENT.search(path):
            await respond(send, 400, "bad_request", "'.' and '..' path segments are not allowed")
            return
        if route.methods is not None and method not in route.methods:
            if route is self.table.fallback:
                await respond(send, 404, "not_found", f"no route {method} {path}")
            else:
                allow = ", ".join(sorted(route.methods)).encode()
                await respond(
                    send, 405, "method_not_allowed", f"{method} is not allowed here", ((b"allow", allow),)
                )
            return
        try:
            await self._forward(scope, receive, send, route, method)
        except Refusal as refusal:
            await respond(
                send, refusal.status, refusal.code, refusal.detail, refusal.headers, **(refusal.extra or {})
            )

    async def _forward(self, scope: Scope, receive: Receive, send: Send, route: Route, method: str) -> None:
        upstream = self.upstreams[route.upstream]
        state = scope["state"]
        rid: str = state["request_id"]
        authorization: bytes | None = None
        content_length: str | None = None
        has_body = False
        sse = False
        host = b""
        xff: bytes | None = None
        connection: bytes | None = None
        forward: list[tuple[str, str]] = []
        for name, value in scope["headers"]:
            if name in REQUEST_DROP:
                if name == b"connection":
                    connection = value
                elif name == b"content-length":
                    content_length = value.decode("latin-1")
                    has_body = content_length != "0"
                elif name == b"transfer-encoding":
                    has_body = True
                elif name == b"host":
                    host = value
                elif name == b"x-forwarded-for":
                    xff = value
                continue
            if name == b"authorization":
                authorization = value
                if not route.forward_authorization:
                    continue
            elif name == b"accept":
                sse = b"text/event-stream" in value
            forward.append((name.decode("latin-1"), value.decode("latin-1")))
        if connection is not None:  # headers the client named hop-by-hop (RFC 9110 7.6.1)
            named = {t.strip().lower() for t in connection.decode("latin-1").split(",")} - {
                "close",
                "keep-alive",
            }
            if named:
                forward = [h for h in forward if h[0].lower() not in named]
        query: bytes = scope.get("query_string", b"")
        query_token = None
        if sse and query and b"access_token=" in query and self.settings.query_token:
            query, query_token = _take_token(query)

        decisions: list[Decision] = []
        client_ip = scope["client"][0] if scope.get("client") else "unknown"
        await self.rate_limit(self.ip_policy, client_ip, decisions)
        caller = await self.auth.authenticate(
            route, method, self.token_of(route, authorization, query_token), rid
        )
        if caller is not None:
            await self.rate_limit(self.user_policy, caller.user_id, decisions)
            forward.append(("X-Onair-Identity", self.auth.identity_header(caller)))
            state["log"] = {"upstream": upstream.name, "user_id": caller.user_id}
        else:
            state["log"] = {"upstream": upstream.name}
        forward += [
            ("X-Request-ID", rid),
            ("X-Forwarded-For", f"{xff.decode('latin-1')}, {client_ip}" if xff else client_ip),
            ("X-Forwarded-Proto", scope.get("scheme", "http")),
        ]
        if host:
            forward.append(("X-Forwarded-Host", host.decode("latin-1")))

        data: bytes | BodyStream | None = None
        if has_body:
            first = await receive()
            if first["type"] != "http.request":
                return  # the client left (or its body went over the limit: 413 already sent)
            if first.get("more_body", False):
                data = BodyStream(first.get("body", b""), receive)
                if content_length is not None:
                    forward.append(("Content-Length", content_length))
            else:
                data = first.get("body", b"")
        raw_path: bytes = scope.get("raw_path") or path_bytes(scope["path"])
        target = upstream.base + raw_path.decode("latin-1")
        if query:
            target += "?" + query.decode("latin-1")
        url = URL(target, encoded=True)
        headers = CIMultiDict(forward)

        replayable = not isinstance(data, BodyStream)
        attempts = 1 + (route.retries if method in IDEMPOTENT and replayable else 0)
        response = await self._request(upstream, route, method, url, headers, data, attempts)
        if response is None:
            return
        try:
            await self._relay(scope, receive, send, route, upstream, response, decisions)
        finally:
            response.release()

    async def _request(
        self,
        upstream: Upstream,
        route: Route,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        data: bytes | BodyStream | None,
        attempts: int,
    ) -> aiohttp.ClientResponse | None:
        """The upstream's response (headers read), or a :class:`Refusal` naming the upstream."""
        breaker = upstream.breaker
        name = upstream.name
        for attempt in range(attempts):
            try:
                breaker.acquire()
            except CircuitOpen as exc:
                upstream.error("circuit_open")
                retry = max(1, int(exc.retry_after_s + 0.999))
                raise Refusal(
                    503,
                    "upstream_unavailable",
                    f"{name} is unavailable (circuit open); retry in {retry} s",
                    ((b"retry-after", str(retry).encode()),),
                    {"upstream": name},
                ) from None
            started = time.perf_counter()
            try:
                try:
                    async with asyncio.timeout(route.timeout_s):
                        response = await self.session.request(
                            method, url, headers=headers, data=data, allow_redirects=False
                        )
                except Exception:
                    if isinstance(data, BodyStream) and data.gone:  # the client left mid-body
                        breaker.release()
                        return None
                    raise
            except TimeoutError:
                breaker.failure()
                upstream.error("timeout")
                raise Refusal(
                    504,
                    "upstream_timeout",
                    f"{name} did not answer within {route.timeout_s:g} s",
                    extra={"upstream": name},
                ) from None
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
                breaker.failure()
                connect = isinstance(exc, aiohttp.ClientConnectorError)
                upstream.error("connect" if connect else "disconnect")
                if attempt + 1 < attempts:
                    UPSTREAM_RETRIES.labels(name).inc()
                    continue
                if connect:
                    raise Refusal(
                        503,
                        "upstream_unavailable",
                        f"{name} cannot be reached; retry shortly",
                        ((b"retry-after", b"1"),),
                        {"upstream": name},
                    ) from None
                raise Refusal(
                    502,
                    "bad_gateway",
                    f"{name} closed the connection without answering",
                    extra={"upstream": name},
                ) from None
            except aiohttp.ClientError as exc:
                breaker.failure()
                upstream.error("protocol")
                log.warning("gateway.upstream_error", upstream=name, error=repr(exc))
                raise Refusal(
                    502, "bad_gateway", f"{name} answered with something unusable", extra={"upstream": name}
                ) from None
            except BaseException:
                breaker.release()
                raise
            breaker.success()
            upstream.latency.observe(time.perf_counter() - started)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _relay(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        upstream: Upstream,
        response: aiohttp.ClientResponse,
        decisions: list[Decision],
    ) -> None:
        headers = [(k.lower(), v) for k, v in response.raw_headers]
        headers = [(k, v) for k, v in headers if k not in RESPONSE_DROP]
        headers += self.ratelimit_headers(decisions)
        start: Message = {"type": "http.response.start", "status": response.status, "headers": headers}
        content_type = response.headers.get("Content-Type", "")
        length = response.content_length
        if content_type.startswith("text/event-stream"):
            await send(start)
            await _relay_stream(response, receive, send, route.stream_idle_s)
            return
        if length is not None and length <= SMALL_BODY:
            try:
                if response.content.is_eof():  # all here already (the usual small answer)
                    body = await response.read()
                else:
                    async with asyncio.timeout(route.timeout_s):
                        body = await response.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                upstream.error("timeout" if isinstance(exc, TimeoutError) else "protocol")
                await respond(
                    send,
                    504 if isinstance(exc, TimeoutError) else 502,
                    "upstream_timeout" if isinstance(exc, TimeoutError) else "bad_gateway",
                    f"{upstream.name} did not send its whole answer",
                    upstream=upstream.name,
                )
                return
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        await send(start)
        try:
            async with asyncio.timeout(route.timeout_s):
                while chunk := await response.content.readany():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (TimeoutError, aiohttp.ClientError) as exc:
            upstream.error("timeout" if isinstance(exc, TimeoutError) else "protocol")
            log.warning("gateway.body_cut", upstream=upstream.name, error=repr(exc))
            return  # the response stays incomplete: the server closes the connection
        await send({"type": "http.response.body", "body": b""})


async def _relay_stream(
    response: aiohttp.ClientResponse, receive: Receive, send: Send, idle_s: float | None
) -> None:
    """Pass a stream (SSE) chunk by chunk as it arrives; stop when either side leaves."""

    async def pump() -> None:
        while True:
            if idle_s is None:
                chunk = await response.content.readany()
            else:
                async with asyncio.timeout(idle_s):
                    chunk = await response.content.readany()
            if not chunk:
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def client_left() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    pumping = asyncio.ensure_future(pump())
    watching = asyncio.ensure_future(client_left())
    try:
        await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pumping, watching):
            task.cancel()
        for task in (pumping, watching):
            with contextlib.suppress(BaseException):
                await task


class BodyStream:
    """The client's request body as it arrives, for aiohttp to send upstream chunk by chunk.

    ``gone`` turns True when the client left mid-body (or the body went over the route's limit:
    the skeleton's middleware then answered 413 and reports a disconnect)."""

    def __init__(self, first: bytes, receive: Receive) -> None:
        self.first = first
        self.receive = receive
        self.gone = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self.first:
            yield self.first
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                self.gone = True
                raise ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


def _take_token(query: bytes) -> tuple[bytes, str | None]:
    """Remove ``access_token`` from a query string: (the rest, the token)."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    tokens = [v for k, v in pairs if k == "access_token"]
    rest = urlencode([(k, v) for k, v in pairs if k != "access_token"]).encode("latin-1")
    if len(tokens) > 1:
        raise Refusal(400, "bad_request", "send one access_token")
    return rest, tokens[0] if tokens else None


def path_bytes(path: str) -> bytes:
    from urllib.parse import quote

    return quote(path, safe="/:@!$&'()*+,;=-._~").encode("ascii")


class GatewayProxy:
    """The ASGI app behind the skeleton's router (its ``default``): HTTP and WebSocket."""

    def __init__(self) -> None:
        self.gateway: Gateway | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = self.gateway
        if scope["type"] == "websocket":
            from onair_services.gateway.websocket import proxy_websocket

            await proxy_websocket(gateway, scope, receive, send)
            return
        if gateway is None:
            await respond(send, 503, "unavailable", "the gateway is starting", ((b"retry-after", b"1"),))
            return
        await gateway.http(scope, receive, send)


class GuardedProxy:
    """The proxy on the lean path: a bug answers the skeleton's JSON 500 (and is logged), as the
    full app's error middleware would, instead of the server's plain-text one."""

    def __init__(self, proxy: GatewayProxy) -> None:
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.proxy(scope, receive, send)
        except Exception as exc:
            log.error("unhandled error", path=scope.get("path"), error=repr(exc), exc_info=exc)
            # refused by the server when the answer had already started: the connection is closed
            with contextlib.suppress(Exception):
                if scope["type"] == "http":
                    await respond(send, 500, "internal", "unexpected error; it was logged")
                else:
                    await send({"type": "websocket.close", "code": 1011})


class GatewayDispatch:
    """The app's entry: the gateway's own paths to the full FastAPI stack, the rest to the lean
    proxy path (see ``app._lean_path``)."""

    def __init__(self, full: ASGIApp, lean: ASGIApp, own_paths: frozenset[str]) -> None:
        self.full = full
        self.lean = lean
        self.own_paths = own_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or scope["path"] in self.own_paths:
            await self.full(scope, receive, send)
        else:
            await self.lean(scope, receive, send)
