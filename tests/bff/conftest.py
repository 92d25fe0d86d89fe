"""The BFF in-process against skeleton upstreams (tests/bff/fakes.py), each on its own port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio

from onair.devstack.probes import free_port
from onair.fanout.app import running_server
from onair.service import RuntimeSettings
from onair.testing import IdentityIssuer
from onair_services.bff.app import create_app
from onair_services.bff.settings import BffSettings
from onair_services.registry import ServiceUrls

from .fakes import Fakes, chat_app, liveinfo_app, search_app, wallet_app

FAKES: dict[str, Callable[[Fakes], Any]] = {
    "liveinfo": liveinfo_app,
    "chat": chat_app,
    "wallet": wallet_app,
    "search": search_app,
}


@dataclass
class Bff:
    http: httpx.AsyncClient
    fakes: Fakes
    settings: BffSettings
    issuer: IdentityIssuer

    def who(self, username: str = "vivian", roles: tuple[str, ...] = ("viewer",)) -> dict[str, str]:
        return self.issuer.headers(username=username, roles=roles)


async def start_bff(
    tmp_path: Path, issuer: IdentityIssuer, settings: BffSettings, *, missing: tuple[str, ...] = ()
) -> AsyncIterator[Bff]:
    """The BFF with a fake per upstream; the upstreams named in ``missing`` are not running (their
    port is free: connections are refused)."""
    fakes = Fakes()
    async with AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        for name, make in FAKES.items():
            if name in missing:
                urls[f"{name}_url"] = f"http://127.0.0.1:{free_port()}"
            else:
                urls[f"{name}_url"] = await stack.enter_async_context(running_server(make(fakes)))
        app = create_app(
            RuntimeSettings(identity_jwks_url=issuer.jwks_url, spool_dir=tmp_path / "spool"),
            settings,
            ServiceUrls(**urls),
        )
        url = await stack.enter_async_context(running_server(app, lifespan="on"))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=10))
        yield Bff(http, fakes, settings, issuer)


# Short deadlines keep the slow-upstream tests short; the cache is off unless a test turns it on.
FAST = BffSettings(
    liveinfo_timeout_s=0.5,
    chat_timeout_s=0.25,
    wallet_timeout_s=0.25,
    search_timeout_s=0.25,
    anonymous_cache_s=0,
)


@pytest_asyncio.fixture
async def bff(tmp_path: Path, identity_issuer: IdentityIssuer) -> AsyncIterator[Bff]:
    async for b in start_bff(tmp_path, identity_issuer, FAST):
        yield b
