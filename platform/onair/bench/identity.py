"""The gateway's part in a direct benchmark run: its identity keys over HTTP, identities on demand.

Services verify ``X-Onair-Identity`` against the gateway's JWKS. A benchmark that talks to a
service directly (no gateway) serves a JWKS of its own (``jwks_url``, for the service's
``ONAIR_IDENTITY_JWKS_URL``) and signs an identity per request (``headers(...)``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class IdentityKeys:
    def __init__(self) -> None:
        from onair.auth import IDENTITY_HEADER, IdentitySigner, SigningKey, jwks_document

        self.key = SigningKey.generate()
        self.signer = IdentitySigner(self.key, ttl_s=60)
        self.header = IDENTITY_HEADER
        body = orjson.dumps(jwks_document([self.key]))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="bench-jwks", daemon=True).start()
        self.jwks_url = f"http://127.0.0.1:{self._server.server_port}/.well-known/identity-jwks.json"

    def headers(
        self, username: str, roles: Iterable[str] = ("viewer",), user_id: str | None = None
    ) -> dict[str, str]:
        """A fresh identity header (60 s) for ``username`` (user id ``u-<username>`` by default)."""
        return {self.header: self.signer.sign_for(user_id or f"u-{username}", username, tuple(roles))}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
