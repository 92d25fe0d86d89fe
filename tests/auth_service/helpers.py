"""Helpers for the auth service tests: fast settings, running apps, clients, token checks."""

from __future__ import annotations

import asyncio
import random
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from onair.auth import IdentitySigner, JWKSCache, RevocationList, TokenVerifier, identity_from_claims
from onair.cache import TokenCache
from onair.clients import ValkeyClient
from onair.fanout.app import running_server
from onair.service import RuntimeSettings
from onair_services.auth.settings import AuthSettings

PASSWORD = "Correct-Horse-42"


def fast_settings(**overrides: Any) -> AuthSettings:
    """Real settings with cheap argon2 and quick key polls (tests, not production)."""
    values: dict[str, Any] = {
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "key_poll_interval_s": 0.25,
        **overrides,
    }
    return AuthSettings(**values)


def runtime(
    database_url: str,
    valkey_url: str,
    kafka_bootstrap: str,
    spool: Path,
    identity_jwks_url: str,
    **overrides: Any,
) -> RuntimeSettings:
    return RuntimeSettings(
        database_url=database_url,
        valkey_url=valkey_url,
        kafka_bootstrap=kafka_bootstrap,
        spool_dir=spool,
        identity_jwks_url=identity_jwks_url,
        **overrides,
    )


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Run an auth app; uvicorn's own X-Forwarded-For handling is off, so the service's is tested."""
    async with running_server(app, lifespan="on", proxy_headers=False) as url:
        yield url


def new_username(prefix: str = "u") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def new_ip() -> str:
    """An address of the benchmarking range (198.18.0.0/15), different for every caller."""
    return f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def client(url: str, ip: str | None = None) -> httpx.AsyncClient:
    """A client whose requests look forwarded by the gateway from ``ip`` (a fresh one by default)."""
    return httpx.AsyncClient(base_url=url, headers={"X-Forwarded-For": ip or new_ip()}, timeout=30)


async def signup(
    api: httpx.AsyncClient, username: str, role: str = "viewer", password: str = PASSWORD
) -> Any:
    r = await api.post("/auth/signup", json={"username": username, "password": password, "role": role})
    assert r.status_code == 201, r.text
    return r.json()


async def login_body(api: httpx.AsyncClient, username: str, password: str = PASSWORD) -> Any:
    r = await api.post(
        "/auth/login", json={"username": username, "password": password, "refresh_in_body": True}
    )
    assert r.status_code == 200, r.text
    return r.json()


@dataclass
class Verifiers:
    """What a gateway holds: the auth JWKS, a verifier with the revocation list, the identity signer."""

    keys: JWKSCache
    tokens: TokenVerifier
    revocations: RevocationList
    cache: TokenCache

    async def identity_headers(self, access_token: str, signer: IdentitySigner) -> dict[str, str]:
        claims = await self.tokens.verify(access_token)
        return {"X-Onair-Identity": signer.sign(identity_from_claims(claims, request_id="req-12345678"))}


@asynccontextmanager
async def gateway_verifier(
    jwks_url: str,
    valkey_url: str,
    settings: AuthSettings | None = None,
    *,
    min_refetch_interval_s: float = 5.0,
) -> AsyncIterator[Verifiers]:
    users = settings or AuthSettings()
    valkey = ValkeyClient(valkey_url)
    cache = TokenCache(valkey)
    keys = JWKSCache(jwks_url, min_refetch_interval_s=min_refetch_interval_s)
    async with valkey, cache, keys:
        revocations = RevocationList(cache)
        yield Verifiers(keys, users.verifier(keys, revocations=revocations), revocations, cache)


@asynccontextmanager
async def auth_process(env: dict[str, str], workdir: Path) -> AsyncIterator[tuple[str, Path]]:
    """``onair serve auth`` as a process of its own (stdout+stderr in a log file); its URL and log."""
    from onair.devstack.probes import free_port
    from onair.devstack.process import alive, log_tail, spawn, stop

    port = free_port()
    log_path = workdir / "auth-process.log"
    argv = [str(Path(sys.executable).parent / "onair"), "serve", "auth", "--port", str(port)]
    proc = spawn(argv, log_path=log_path, cwd=workdir, env={**env, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as probe:
            for _ in range(600):
                if not alive(proc.pid):
                    raise AssertionError(f"onair serve auth exited:\n{log_tail(log_path, 30)}")
                try:
                    if (await probe.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"onair serve auth not ready in 60 s:\n{log_tail(log_path, 30)}")
        yield url, log_path
    finally:
        stop(proc.pid, grace_s=10)
