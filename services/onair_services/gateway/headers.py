"""Headers for browsers on every gateway answer: CORS for the web origins, and security headers.

* **CORS** (``ONAIR_GATEWAY_CORS_ORIGINS``): a preflight (``OPTIONS`` with
  ``Access-Control-Request-Method``) from a listed origin is answered here (204, never sent
  upstream) with the methods, the request headers the API uses and ``Access-Control-Max-Age``;
  answers to a listed origin carry ``Access-Control-Allow-Origin`` (that origin, ``Vary: Origin``),
  ``Access-Control-Allow-Credentials`` (the auth refresh cookie) and the response headers a page
  may read (request id, rate limits, ...). ``*`` allows any origin, without credentials. An
  origin not listed gets no CORS headers: the browser keeps the answer from the page.
* **Security headers**, added unless the answer already has them (the web app may set its own
  ``Content-Security-Policy``): ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
  ``Referrer-Policy: strict-origin-when-cross-origin``, ``Content-Security-Policy``
  (``ONAIR_GATEWAY_CSP``, default suited to a same-origin web app: ``'self'`` everywhere,
  ``frame-ancestors 'none'``), ``Strict-Transport-Security`` when ``ONAIR_GATEWAY_HSTS_MAX_AGE_S``
  is set (behind TLS).

A plain ASGI middleware: one pass over the request headers, and the answer's headers extended
once at ``http.response.start``.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onair_services.gateway.settings import GatewaySettings

ALLOWED_METHODS: Final = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOWED_REQUEST_HEADERS: Final = frozenset(
    {
        "accept",
        "accept-language",
        "authorization",
        "content-language",
        "content-type",
        "idempotency-key",
        "last-event-id",
        "x-onair-position",
        "x-request-id",
    }
)
EXPOSED: Final = (
    b"X-Request-ID, RateLimit, RateLimit-Policy, Retry-After, X-Onair-Position, Location, WWW-Authenticate"
)


class BrowserHeaders:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, *, settings: GatewaySettings) -> None:
        self.app = app
        self.origins = frozenset(settings.cors_origins)
        self.any_origin = "*" in self.origins
        security = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
        ]
        if settings.csp:
            security.append((b"content-security-policy", settings.csp.encode("latin-1")))
        if settings.hsts_max_age_s:
            security.append((b"strict-transport-security", b"max-age=%d" % settings.hsts_max_age_s))
        self.security = tuple(security)
        self.security_names = frozenset(name for name, _ in security)
        self.max_age = str(settings.cors_max_age_s).encode()

    def _cors(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        if origin is None or not (
            self.origins and (self.any_origin or origin.decode("latin-1") in self.origins)
        ):
            return []
        if self.any_origin and origin.decode("latin-1") not in self.origins:
            return [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", EXPOSED)]
        return [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-expose-headers", EXPOSED),
            (b"vary", b"Origin"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin: bytes | None = None
        preflight: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = value
        cors = self._cors(origin) if origin is not None else []
        if preflight is not None and scope["method"] == "OPTIONS" and origin is not None:
            await self._preflight(scope, send, cors)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers} & self.security_names
                headers += [h for h in self.security if h[0] not in present] if present else self.security
                if cors:
                    headers += cors
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _preflight(self, scope: Scope, send: Send, cors: list[tuple[bytes, bytes]]) -> None:
        headers = [*self.security, (b"content-length", b"0")]
        if cors:
            headers += cors
            headers += [
                (b"access-control-allow-methods", ALLOWED_METHODS),
                (b"access-control-max-age", self.max_age),
            ]
            requested = next((v for n, v in scope["headers"] if n == b"access-control-request-headers"), b"")
            names = [h.strip().lower() for h in requested.decode("latin-1").split(",") if h.strip()]
            if all(n in ALLOWED_REQUEST_HEADERS for n in names) and names:
                headers.append((b"access-control-allow-headers", ", ".join(names).encode()))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
