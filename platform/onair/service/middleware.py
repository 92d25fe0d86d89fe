"""One ASGI middleware for every request of a service: request id, body limit, metrics, access log.

* ``X-Request-ID``: accepted when it is well formed (``^[A-Za-z0-9._:-]{8,128}$``), generated
  otherwise; bound to the logging context (so every log line of the request carries it, and the
  Kafka and NATS clients put it in their headers) and returned on the response.
* Body limit: a request whose ``Content-Length`` (or streamed body) exceeds the limit gets 413 with
  the JSON error body; nothing of it reaches the handler. WebSockets and bodiless methods pass.
* Metrics: ``onair_http_requests_total{service,route,method,status}`` and
  ``onair_http_request_duration_seconds{service,route}``; ``route`` is the route template
  (``/live/{channel}``), never the raw path, so label cardinality stays bounded.
* Access log: one line per request in the logging contract (``event="http request"``); the app may
  add fields for that line in ``scope["state"]["log"]`` (a dict; the gateway adds the upstream and
  the user id). Never the query string, so no token in it.

It is a plain ASGI callable (no ``BaseHTTPMiddleware``): streaming responses (SSE) pass through
untouched and the per-request cost is a few microseconds.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onair.logging import get_logger, request_context

REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

REQUESTS = Counter(
    "onair_http_requests_total", "HTTP requests answered", ["service", "route", "method", "status"]
)
DURATION = Histogram(
    "onair_http_request_duration_seconds",
    "Time to the end of the response headers (streams: to the first byte)",
    ["service", "route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

access_log = get_logger("onair.access")


def valid_request_id(value: str | None) -> str | None:
    return value if value is not None and REQUEST_ID_RE.match(value) else None


def new_request_id() -> str:
    return uuid.uuid4().hex


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "(unmatched)"


class RequestMiddleware:
    """See the module docstring. ``max_body_bytes`` may be raised per path prefix (``limits``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        max_body_bytes: int,
        limits: dict[str, int] | None = None,
        access_log: bool = False,
    ) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.limits = sorted((limits or {}).items(), key=lambda kv: -len(kv[0]))
        self.access_log = access_log

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path.startswith(prefix):
                return limit
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                given = valid_request_id(value.decode("latin-1"))
                break
        rid = given or new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        with request_context(rid):
            if kind == "websocket":
                await self.app(scope, receive, send)
            else:
                await self._http(scope, receive, send, rid)

    async def _http(self, scope: Scope, receive: Receive, send: Send, rid: str) -> None:
        started = time.perf_counter()
        method: str = scope["method"]
        status = 500
        header_sent = False
        rejected = False  # the body went over the limit: we answered 413, the app sees a disconnect
        rid_header = (REQUEST_ID_HEADER, rid.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status, header_sent
            if rejected:
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                header_sent = True
                message["headers"] = [*message.get("headers", ()), rid_header]
                DURATION.labels(self.service, _route_template(scope)).observe(time.perf_counter() - started)
            await send(message)

        app_receive = receive
        if method in _BODY_METHODS:
            limit = self.limit_for(scope["path"])
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                await self._too_large(send, limit, rid_header)
                self._done(scope, method, 413, started)
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received, rejected, status
                if rejected:
                    return {"type": "http.disconnect"}
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        rejected = True
                        # read the rest first: a response sent mid-upload makes the server close
                        # the connection under a client that is still sending (it sees a reset)
                        await _drain(receive, message, budget=max(4 * limit, 1 << 20))
                        if not header_sent:
                            await self._too_large(send, limit, rid_header)
                            status = 413
                        return {"type": "http.disconnect"}
                return message

            app_receive = limited_receive
        try:
            await self.app(scope, app_receive, send_wrapper)
        finally:
            self._done(scope, method, status, started)

    def _done(self, scope: Scope, method: str, status: int, started: float) -> None:
        route = _route_template(scope)
        REQUESTS.labels(self.service, route, method, str(status)).inc()
        if self.access_log:
            access_log.info(
                "http request",
                method=method,
                path=scope["path"],
                route=route,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                client=(scope.get("client") or ("", 0))[0],
                **(scope.get("state") or {}).get("log", {}),
            )

    @staticmethod
    async def _too_large(send: Send, limit: int, rid_header: tuple[bytes, bytes]) -> None:
        body = orjson.dumps(
            {"error": "too_large", "detail": f"request body exceeds the limit of {limit} bytes"}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    rid_header,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _drain(receive: Receive, last: Message, budget: int) -> None:
    """Read (and drop) the rest of a refused body, up to ``budget`` bytes, so the client that is
    still sending sees our 413 instead of a reset connection."""
    while last.get("more_body", False) and budget > 0:
        last = await receive()
        if last["type"] != "http.request":
            return
        budget -= len(last.get("body", b""))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def request_id_of(scope_or_request: Any) -> str | None:
    """The request id the middleware bound (from a Request or an ASGI scope)."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    state = scope.get("state") or {}
    return state.get("request_id")
