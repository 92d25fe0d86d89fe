"""Helpers for the gateway tests: token crafting, the upstream apps behind the gateway, processes.

* :class:`AuthStandIn` — what the gateway needs of the auth service: its JWKS, and a logout that
  revokes the caller's token through the shared revocation list (as the real one does).
* :func:`echo_app` — a service on the skeleton that verifies the gateway's identity and serves
  every prefix the tests route to it: echo of what arrived, identity, upload, slow, SSE, a
  WebSocket echo, and a route that publishes to NATS and logs an event (request-id tracing).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response, StreamingResponse

from onair.auth import (
    Identity,
    RevocationList,
    SigningKey,
    StaticKeys,
    TokenError,
    TokenVerifier,
    jwks_document,
)
from onair.auth.fastapi import CurrentIdentity, MaybeIdentity
from onair.cache.tokens import TokenCache
from onair.clients import ValkeyClient
from onair.service import RuntimeSettings, Service, ServiceSpec, create_service_app, service_of

ISSUER = "onair-auth"
AUDIENCE = "onair"


# -- tokens ----------------------------------------------------------------------------------------
def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid access-token claims; ``name=None`` drops a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": f"u-{uuid.uuid4().hex[:8]}",
        "name": "alice",
        "roles": ["viewer"],
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def compact(header: Mapping[str, Any], payload: Mapping[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS with exactly this header, signed by ``sign``."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(payload).encode())
    signing_input = f"{head}.{body}".encode()
    return f"{head}.{body}.{b64(sign(signing_input))}"


def signer_of(key: SigningKey) -> Callable[[bytes], bytes]:
    return lambda data: key._algorithm.sign(data, key._private)


def hs256_with(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the auth service, as far as the gateway is concerned ------------------------------------------
class AuthStandIn:
    """JWKS at ``/.well-known/jwks.json``; ``POST /auth/logout`` revokes the bearer token's ``jti``;
    ``GET /auth/echo`` tells whether the Authorization header arrived (auth alone may see it)."""

    def __init__(self, key: SigningKey, valkey_url: str) -> None:
        self.key = key
        self.valkey = ValkeyClient(valkey_url)
        self.tokens: TokenCache | None = None
        self.revocations: RevocationList | None = None
        self.verifier = TokenVerifier(StaticKeys([key.verification_key()]), issuer=ISSUER, audience=AUDIENCE)
        self.jwks_requests = 0
        app = FastAPI()

        @app.get("/.well-known/jwks.json")
        async def jwks() -> Response:
            self.jwks_requests += 1
            return JSONResponse(jwks_document([self.key]))

        @app.get("/healthz")
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/auth/echo")
        async def echo(request: Request) -> dict[str, Any]:
            return {
                "authorization": request.headers.get("authorization") is not None,
                "identity": request.headers.get("x-onair-identity") is not None,
            }

        @app.post("/auth/logout")
        async def logout(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            try:
                token = await self.verifier.verify(header.removeprefix("Bearer "))
            except TokenError as exc:
                return JSONResponse({"error": "unauthorized", "detail": exc.detail}, 401)
            assert self.revocations is not None
            await self.revocations.revoke(token.token_id, token.expires_at, reason="logout")
            return Response(status_code=204)

        self.app = app

    def mint(self, **overrides: Any) -> str:
        return self.key.sign(claims(**overrides))

    async def start(self) -> None:
        await self.valkey.start()
        self.tokens = TokenCache(self.valkey)
        await self.tokens.start()
        self.revocations = RevocationList(self.tokens)

    async def close(self) -> None:
        if self.tokens is not None:
            await self.tokens.close()
        await self.valkey.close()


# -- the upstream service ---------------------------------------------------------------------------
def _identity_body(caller: Identity | None) -> dict[str, Any] | None:
    if caller is None:
        return None
    return {
        "user_id": caller.user_id,
        "username": caller.username,
        "roles": sorted(caller.roles),
        "request_id": caller.request_id,
    }


class EchoState:
    """What the tests steer in the upstream: SSE release, request counter."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.requests = 0
        self.sse_closed = asyncio.Event()


def echo_app(settings: RuntimeSettings, state: EchoState, *, events: bool = False) -> FastAPI:
    """The upstream the gateway fronts in the tests (see the module docstring).

    ``events``: NATS and Kafka on (the request-id test); the app then owns the process's logging.
    """
    router = APIRouter()

    def echo_of(request: Request, caller: Identity | None) -> dict[str, Any]:
        state.requests += 1
        return {
            "path": request.url.path,
            "query": request.url.query,
            "headers": {k: v for k, v in request.headers.items()},
            "identity": _identity_body(caller),
        }

    for prefix in (
        "/live",
        "/search",
        "/chat",
        "/bff",
        "/media",
        "/wallet",
        "/channels",
        "/follows",
        "/notify",
    ):
        name = prefix.strip("/")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            for path in (prefix, f"{prefix}/echo"):
                router.add_api_route(
                    path,
                    _echo_handler(echo_of),
                    methods=[method],
                    operation_id=f"{name}{'_echo' if path != prefix else ''}_{method.lower()}",
                )

    @router.get("/live/me")
    async def me(caller: CurrentIdentity) -> dict[str, Any] | None:
        return _identity_body(caller)

    @router.post("/live/upload")
    async def upload(request: Request) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        return {"bytes": size, "sha256": digest.hexdigest()}

    @router.get("/live/big")
    async def big(n: int = 1 << 20) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            left = n
            while left > 0:
                piece = min(left, 64 * 1024)
                yield b"x" * piece
                left -= piece

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @router.get("/search/slow")
    async def slow(seconds: float = 2.0) -> dict[str, bool]:
        await asyncio.sleep(seconds)
        return {"slow": True}

    @router.get("/live/sse")
    async def sse() -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            try:
                yield b"id: 1\ndata: first\n\n"
                await state.release.wait()
                yield b"id: 2\ndata: second\n\n"
            finally:
                state.sse_closed.set()

        return StreamingResponse(events(), media_type="text/event-stream")

    @router.websocket("/chat/{room}/ws")
    async def ws(websocket: WebSocket, room: str) -> None:
        header = websocket.headers.get("x-onair-identity")
        caller = None
        if header is not None:
            caller = await websocket.app.state.identity_verifier.verify(header)
        protocols = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol=protocols[0] if protocols else None)
        await websocket.send_json(
            {
                "room": room,
                "identity": _identity_body(caller),
                "request_id": websocket.headers.get("x-request-id"),
            }
        )
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") == "close-me":
                    await websocket.close(code=4001)
                    return
                if message.get("text") is not None:
                    await websocket.send_text("echo:" + message["text"])
                elif message.get("bytes") is not None:
                    await websocket.send_bytes(message["bytes"][::-1])
        except WebSocketDisconnect:
            return

    @router.post("/live/trace")
    async def trace(caller: CurrentIdentity, svc: Service = Depends(service_of)) -> dict[str, Any]:
        assert svc.nats is not None
        await svc.nats.publish(f"test.trace.{caller.user_id}", b"hello")
        position = await svc.log_event(
            "trace logged", category="test.gateway.trace", entity=caller.user_id, seq=1, note="trace"
        )
        return {
            "identity": _identity_body(caller),
            "position": None if position is None else [position.topic, position.partition, position.offset],
        }

    spec = ServiceSpec(name="echo", nats=events, kafka=events)
    return create_service_app(spec, [router], settings=settings, configure_logs=events)


def _echo_handler(echo_of: Callable[[Request, Identity | None], dict[str, Any]]) -> Callable[..., Any]:
    async def handler(request: Request, caller: MaybeIdentity) -> dict[str, Any]:
        await request.body()
        return echo_of(request, caller)

    return handler


# -- gateway processes -------------------------------------------------------------------------------
def free_port() -> int:
    from onair.fanout.app import free_port as _free_port

    return _free_port()


def spawn_gateway(port: int, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    onair = str(Path(sys.executable).parent / "onair")
    full = {**os.environ, **env, "ONAIR_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    out = open(log, "wb")  # noqa: SIM115 - the process writes it; closed when the process ends
    return subprocess.Popen(
        [onair, "serve", "gateway", "--port", str(port)], env=full, stdout=out, stderr=out
    )


async def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {_tail(log)}")
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway at {url} not ready: {_tail(log)}")
            await asyncio.sleep(0.1)


def _tail(log: Path) -> str:
    return log.read_bytes()[-2000:].decode(errors="replace")
