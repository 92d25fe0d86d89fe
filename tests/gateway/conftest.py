"""The gateway on real servers: an auth stand-in (JWKS, logout), the gateway, an upstream service.

``stack`` (one per module): the gateway in this process (uvicorn, lifespan on) in front of the
echo service (``helpers.echo_app``: the skeleton, verifying the gateway's identity, with NATS and
Kafka) for every prefix but auth's, and of the auth stand-in for ``/auth`` and
``/.well-known/jwks.json``; ``bff`` points at a port nothing listens on (breaker tests). Valkey
keys live in a namespace of the module's own. Short timeouts: ``/search`` 1 s, breakers open for
0.5 s.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from onair.auth import SigningKey, UserTokenSettings
from onair.fanout.app import running_server
from onair.service import RuntimeSettings
from onair_services.gateway.app import create_app
from onair_services.gateway.settings import GatewaySettings
from onair_services.gateway.table import ROUTES
from onair_services.registry import ServiceUrls

from .helpers import AuthStandIn, EchoState, echo_app, free_port


@contextmanager
def valkey_namespace(prefix: str) -> Iterator[str]:
    """A Valkey key namespace of the module's own (apps read it when they start)."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    old = os.environ.get("ONAIR_VALKEY_NAMESPACE")
    os.environ["ONAIR_VALKEY_NAMESPACE"] = name
    try:
        yield name
    finally:
        if old is None:
            os.environ.pop("ONAIR_VALKEY_NAMESPACE", None)
        else:
            os.environ["ONAIR_VALKEY_NAMESPACE"] = old


@dataclass
class Stack:
    gateway: str  # base URL
    upstream: str
    auth: AuthStandIn
    app: FastAPI
    echo: EchoState
    http: httpx.AsyncClient  # on the gateway
    dead_port: int  # where bff is said to live
    namespace: str
    state_dir: Path
    valkey_url: str
    nats_url: str
    kafka_bootstrap: str


def routes_for_tests() -> list[object]:
    return [dataclasses.replace(r, timeout_s=1.0) if r.prefix == "/search" else r for r in ROUTES]


@pytest.fixture(scope="session")
def auth_key() -> SigningKey:
    return SigningKey.generate("EdDSA")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory,
    auth_key: SigningKey,
    valkey_url: str,
    nats_url: str,
    kafka_bootstrap: str,
) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("gateway")
    with valkey_namespace("gw") as namespace:
        async with AsyncExitStack() as stack:
            auth = AuthStandIn(auth_key, valkey_url)
            await auth.start()
            stack.push_async_callback(auth.close)
            auth_url = await stack.enter_async_context(running_server(auth.app))
            upstream_port, dead_port = free_port(), free_port()
            upstream = f"http://127.0.0.1:{upstream_port}"
            urls = {
                f"{name}_url": upstream
                for name in ("liveapi", "media", "liveinfo", "search", "chat", "wallet", "web")
            }
            app = create_app(
                RuntimeSettings(valkey_url=valkey_url, spool_dir=tmp / "spool"),
                gateway=GatewaySettings(
                    state_dir=tmp / "state",
                    cors_origins=["https://web.example"],
                    breaker_open_s=0.5,
                    breaker_consecutive_failures=3,
                    rate_limit_per_ip=100_000,
                    rate_limit_per_user=100_000,
                    ready_upstreams=["auth"],
                ),
                user_tokens=UserTokenSettings(jwks_url=f"{auth_url}/.well-known/jwks.json"),
                urls=ServiceUrls(auth_url=auth_url, bff_url=f"http://127.0.0.1:{dead_port}", **urls),
                routes_table=routes_for_tests(),  # type: ignore[arg-type]
                configure_logs=False,
            )
            gateway = await stack.enter_async_context(running_server(app, lifespan="on"))
            echo = EchoState()
            upstream_app = echo_app(
                RuntimeSettings(
                    nats_url=nats_url,
                    kafka_bootstrap=kafka_bootstrap,
                    spool_dir=tmp / "spool",
                    identity_jwks_url=f"{gateway}/.well-known/identity-jwks.json",
                ),
                echo,
                events=True,
            )
            await stack.enter_async_context(running_server(upstream_app, port=upstream_port, lifespan="on"))
            http = await stack.enter_async_context(httpx.AsyncClient(base_url=gateway, timeout=10.0))
            yield Stack(
                gateway=gateway,
                upstream=upstream,
                auth=auth,
                app=app,
                echo=echo,
                http=http,
                dead_port=dead_port,
                namespace=namespace,
                state_dir=tmp / "state",
                valkey_url=valkey_url,
                nats_url=nats_url,
                kafka_bootstrap=kafka_bootstrap,
            )
