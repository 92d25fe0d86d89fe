"""search on real servers: one app per database engine (SQLite FTS5, PostgreSQL tsvector), module-scoped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from liveinfo.helpers import module_database

from onair.clients import KafkaClient
from onair.fanout.app import running_server
from onair.service import RuntimeSettings, Service
from onair_services.search.app import create_app
from onair_services.search.settings import SearchSettings


@dataclass
class Search:
    app: FastAPI
    http: httpx.AsyncClient
    kafka: KafkaClient
    engine: str

    @property
    def svc(self) -> Service:
        svc: Service = self.app.state.service
        return svc

    async def find(self, q: str | None = None, **params: Any) -> list[str]:
        """Channels found (first page of 50), best first."""
        if q is not None:
            params["q"] = q
        r = await self.http.get("/search", params={"limit": 50, **params})
        assert r.status_code == 200, r.text
        return [hit["channel"] for hit in r.json()["items"]]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgres"])
async def search(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
    valkey_url: str,
    nats_url: str,
) -> AsyncIterator[Search]:
    tmp = tmp_path_factory.mktemp("search")
    async with module_database(request.param, str(tmp)) as db:
        settings = RuntimeSettings(
            database_url=db,
            valkey_url=valkey_url,
            nats_url=nats_url,
            kafka_bootstrap=kafka_bootstrap,
            spool_dir=Path(tmp) / "spool",
        )
        app = create_app(settings, SearchSettings(position_wait_s=1.0), configure_logs=False)
        kafka = KafkaClient(kafka_bootstrap, client_id="search-test")
        async with (
            running_server(app, lifespan="on") as url,
            httpx.AsyncClient(base_url=url, timeout=10) as http,
        ):
            svc: Service = app.state.service
            for runner in svc.runners.values():
                await runner.wait_assigned()
            yield Search(app, http, kafka, request.param)
        await kafka.close()
