"""A stand-in for the gateway's identity keys: its JWKS over HTTP, and signed identities on demand.

Services verify ``X-Onair-Identity`` against the gateway's JWKS (``ONAIR_IDENTITY_JWKS_URL``). A
test or a benchmark that talks to a service directly, without a gateway, runs a
:class:`GatewayStandIn`: it serves a JWKS of its own from a thread (so it works from synchronous
fixtures and from any event loop) and signs an identity per call::

    gw = GatewayStandIn()
    settings = RuntimeSettings(identity_jwks_url=gw.jwks_url, ...)
    await client.get("/wallet/balance", headers=gw.headers("alice", roles=("viewer",)))
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from onair.auth.identity import IDENTITY_HEADER, IdentitySigner
from onair.auth.keys import SigningKey, jwks_document


class GatewayStandIn:
    """The gateway's identity side without the gateway. ``requests`` counts JWKS fetches."""

    def __init__(self, *, ttl_s: int = 60) -> None:
        self.key = SigningKey.generate()
        self.signer = IdentitySigner(self.key, ttl_s=ttl_s)
        self.header_name = IDENTITY_HEADER
        self.requests = 0
        body = orjson.dumps(jwks_document([self.key]))
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                standin.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="identity-jwks", daemon=True)
        self._thread.start()
        self.jwks_url = f"http://127.0.0.1:{self._server.server_port}/.well-known/identity-jwks.json"

    def token(
        self,
        username: str = "alice",
        roles: Iterable[str] = ("viewer",),
        user_id: str | None = None,
        request_id: str | None = None,
    ) -> str:
        """A fresh identity token; the user id defaults to ``u-<username>``."""
        return self.signer.sign_for(user_id or f"u-{username}", username, tuple(roles), request_id)

    def headers(
        self, username: str = "alice", roles: Iterable[str] = ("viewer",), user_id: str | None = None
    ) -> dict[str, str]:
        """``{"X-Onair-Identity": <fresh token>}``."""
        return {self.header_name: self.token(username, roles, user_id)}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
