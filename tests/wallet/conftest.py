"""The wallet on real servers: one in-process app per test module and database.

A module may set ``WALLET_SETTINGS`` (a dict of :class:`WalletSettings` fields) for its app;
faults are enabled in every test app (the fault header and rates are honoured).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from onair.fanout.app import running_server
from onair.service import RuntimeSettings, Service
from onair.testing import IdentityIssuer
from onair_services.wallet.app import create_app
from onair_services.wallet.core import Wallet
from onair_services.wallet.settings import WalletSettings

from .helpers import module_database

BASE_SETTINGS: dict[str, Any] = {
    "faults": True,
    "provider_timeout_s": 0.2,
    "sweep_interval_s": 0.5,
    "saga_lease_s": 3.0,
    "audit_interval_s": 0,
}


@dataclass
class WalletApp:
    app: FastAPI
    http: httpx.AsyncClient
    url: str
    database_url: str
    issuer: IdentityIssuer
    kafka_bootstrap: str
    nats_url: str

    @property
    def svc(self) -> Service:
        svc: Service = self.app.state.service
        return svc

    @property
    def wallet(self) -> Wallet:
        wallet: Wallet = self.svc.state["wallet"]
        return wallet


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgres"])
async def wallet_app(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    nats_url: str,
    kafka_bootstrap: str,
    identity_issuer: IdentityIssuer,
) -> AsyncIterator[WalletApp]:
    tmp = tmp_path_factory.mktemp("wallet")
    settings = {**BASE_SETTINGS, **getattr(request.module, "WALLET_SETTINGS", {})}
    async with module_database(request.param, str(tmp)) as db:
        app = create_app(
            RuntimeSettings(
                database_url=db,
                nats_url=nats_url,
                kafka_bootstrap=kafka_bootstrap,
                spool_dir=Path(tmp) / "spool",
                identity_jwks_url=identity_issuer.jwks_url,
            ),
            WalletSettings(**settings),
        )
        async with (
            running_server(app, lifespan="on") as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            yield WalletApp(app, http, url, db, identity_issuer, kafka_bootstrap, nats_url)
