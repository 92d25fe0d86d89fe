"""Two gateway processes (``onair serve gateway``) in front of one upstream: what they share.

* the identity key: neither has ``ONAIR_GATEWAY_IDENTITY_KEY_FILE``; both create-or-read the key
  in one state folder under a file lock, so the upstream (which fetches the JWKS from A only)
  verifies the identities B signs;
* revocation: a logout through A revokes the token in Valkey; B refuses it too;
* one rate limit: 20 requests per user per minute across both.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio

from onair.auth import SigningKey
from onair.fanout.app import running_server
from onair.service import RuntimeSettings

from .conftest import valkey_namespace
from .helpers import AuthStandIn, EchoState, bearer, echo_app, free_port, spawn_gateway, wait_healthy

pytestmark = pytest.mark.asyncio(loop_scope="module")

USER_LIMIT = 20


@dataclass
class Replicas:
    a: httpx.AsyncClient
    b: httpx.AsyncClient
    auth: AuthStandIn


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def replicas(
    tmp_path_factory: pytest.TempPathFactory, auth_key: SigningKey, valkey_url: str
) -> AsyncIterator[Replicas]:
    tmp = tmp_path_factory.mktemp("replicas")
    with valkey_namespace("gwr") as namespace:
        async with AsyncExitStack() as stack:
            auth = AuthStandIn(auth_key, valkey_url)
            await auth.start()
            stack.push_async_callback(auth.close)
            auth_url = await stack.enter_async_context(running_server(auth.app))
            ports = {"a": free_port(), "b": free_port(), "upstream": free_port()}
            upstream = f"http://127.0.0.1:{ports['upstream']}"
            env = {
                "ONAIR_VALKEY_URL": valkey_url,
                "ONAIR_VALKEY_NAMESPACE": namespace,
                "ONAIR_AUTH_JWKS_URL": f"{auth_url}/.well-known/jwks.json",
                "ONAIR_AUTH_URL": auth_url,
                "ONAIR_LIVEINFO_URL": upstream,
                "ONAIR_GATEWAY_STATE_DIR": str(tmp / "state"),
                "ONAIR_GATEWAY_RATE_LIMIT_PER_USER": str(USER_LIMIT),
                "ONAIR_GATEWAY_READY_UPSTREAMS": "auth",
                "ONAIR_SPOOL_DIR": str(tmp / "spool"),
                "ONAIR_LOG_LEVEL": "WARNING",
                "ONAIR_PROFILING": "false",
            }
            procs: list[subprocess.Popen[bytes]] = []
            try:
                for name in ("a", "b"):  # started together: they race for the key file
                    procs.append(spawn_gateway(ports[name], env, tmp / f"{name}.log"))
                for name, proc in zip(("a", "b"), procs, strict=True):
                    await wait_healthy(f"http://127.0.0.1:{ports[name]}", proc, tmp / f"{name}.log")
                settings = RuntimeSettings(
                    identity_jwks_url=f"http://127.0.0.1:{ports['a']}/.well-known/identity-jwks.json"
                )
                await stack.enter_async_context(
                    running_server(echo_app(settings, EchoState()), port=ports["upstream"], lifespan="on")
                )
                a = await stack.enter_async_context(
                    httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['a']}")
                )
                b = await stack.enter_async_context(
                    httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['b']}")
                )
                yield Replicas(a, b, auth)
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()


async def test_both_replicas_sign_with_the_same_key(replicas: Replicas) -> None:
    keys_a = (await replicas.a.get("/.well-known/identity-jwks.json")).json()
    keys_b = (await replicas.b.get("/.well-known/identity-jwks.json")).json()
    assert keys_a == keys_b
    token = replicas.auth.mint(name="erin")
    for gateway in (replicas.a, replicas.b):  # the upstream knows A's JWKS only
        r = await gateway.get("/live/me", headers=bearer(token))
        assert r.status_code == 200, r.text
        assert r.json()["username"] == "erin"


async def test_a_revoke_through_one_replica_takes_effect_on_the_other(replicas: Replicas) -> None:
    token = replicas.auth.mint()
    for gateway in (replicas.a, replicas.b):  # both have verified (and cached) it
        assert (await gateway.get("/live/echo", headers=bearer(token))).status_code == 200
    r = await replicas.a.post("/auth/logout", headers=bearer(token))
    assert r.status_code == 204, r.text
    async with asyncio.timeout(5):
        while True:  # one invalidation push away
            r = await replicas.b.get("/live/echo", headers=bearer(token))
            if r.status_code == 401:
                break
            await asyncio.sleep(0.01)
    assert r.json()["reason"] == "revoked"
    r = await replicas.a.get("/live/echo", headers=bearer(token))
    assert r.status_code == 401 and r.json()["reason"] == "revoked"


async def test_one_rate_limit_across_both_replicas(replicas: Replicas) -> None:
    token = replicas.auth.mint()
    statuses = []
    for i in range(USER_LIMIT):  # the limit, spread over both, with syncs in between
        gateway = replicas.a if i < USER_LIMIT // 2 else replicas.b
        statuses.append((await gateway.get("/live/echo", headers=bearer(token))).status_code)
        if i == USER_LIMIT // 2 - 1:
            await asyncio.sleep(1.0)  # A's hits reach Valkey (100 ms syncs; slack for a busy machine)
    assert statuses == [200] * USER_LIMIT
    await asyncio.sleep(1.0)
    for gateway in (replicas.a, replicas.b):
        r = await gateway.get("/live/echo", headers=bearer(token))
        assert r.status_code == 429, r.text
        assert r.json()["error"] == "rate_limited" and r.json()["policy"] == "user"
        assert int(r.headers["retry-after"]) >= 1
        assert f'"user";q={USER_LIMIT};w=60' in r.headers["ratelimit-policy"]
        assert '"user";r=0;' in r.headers["ratelimit"]
    # another user is not affected
    assert (await replicas.b.get("/live/echo", headers=bearer(replicas.auth.mint()))).status_code == 200
