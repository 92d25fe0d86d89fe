"""Helpers for the auth tests: a real JWKS issuer over HTTP, token crafting, polling."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from onair.auth import SigningKey, jwks_document
from onair.fanout.app import running_server

ISSUER = "onair-auth"
AUDIENCE = "onair"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid user-token claims; ``name=None`` drops a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u-1",
        "name": "alice",
        "roles": ["viewer"],
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def compact(header: Mapping[str, Any], payload: Mapping[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS with exactly this header (no defaults added) signed by ``sign``."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(payload).encode())
    signing_input = f"{head}.{body}".encode()
    return f"{head}.{body}.{b64(sign(signing_input))}"


def signer_of(key: SigningKey) -> Callable[[bytes], bytes]:
    """Sign arbitrary bytes with ``key`` (as a forger holding it would)."""
    return lambda data: key._algorithm.sign(data, key._private)


def hs256_with(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


async def wait_until(pred: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``pred`` until it holds; the state changes through other connections and servers."""
    async with asyncio.timeout(timeout_s):
        while True:
            if pred():
                return
            await asyncio.sleep(0.01)


class Issuer:
    """A real HTTP server publishing a JWKS at ``/jwks.json``; counts the requests it answers.

    ``mode``: ``"ok"``, ``"error"`` (500), ``"garbage"`` (not JSON), ``"empty"`` (no keys);
    ``delay_s`` slows every answer (to make concurrent fetches overlap).
    """

    def __init__(self, *keys: SigningKey) -> None:
        self.keys: list[SigningKey] = list(keys)
        self.requests = 0
        self.mode = "ok"
        self.delay_s = 0.0
        self.url = ""
        self._stack: AsyncExitStack | None = None
        self.app = FastAPI()
        self.app.add_api_route("/jwks.json", self._jwks, methods=["GET"])

    async def _jwks(self) -> Response:
        self.requests += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.mode == "error":
            return JSONResponse({"error": "boom"}, 500)
        if self.mode == "garbage":
            return Response(b"<html>not json", media_type="text/html")
        if self.mode == "empty":
            return JSONResponse({"keys": []})
        return JSONResponse(jwks_document(self.keys))

    async def start(self, port: int = 0) -> str:
        self._stack = AsyncExitStack()
        base = await self._stack.enter_async_context(running_server(self.app, port=port))
        self.url = f"{base}/jwks.json"
        return self.url

    async def stop(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()
