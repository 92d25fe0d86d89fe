"""liveinfo on real servers: one projecting instance and read-only replicas sharing its database.

The apps are module-scoped (a Kafka group join takes seconds on this broker): ``live`` holds the
projecting instance ``a`` and two replicas (``ONAIR_LIVEINFO_PROJECTIONS=false``), ``b`` with the
near cache and ``c`` without it, each with its own Valkey client and tracker. Each module runs
once on SQLite and once on PostgreSQL.
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

from onair.clients import KafkaClient
from onair.fanout.app import running_server
from onair.service import RuntimeSettings, Service
from onair_services.liveinfo.app import create_app
from onair_services.liveinfo.readmodel import LiveReadModel
from onair_services.liveinfo.settings import LiveinfoSettings

from .helpers import module_database, valkey_namespace


@dataclass
class Instance:
    app: FastAPI
    http: httpx.AsyncClient
    url: str

    @property
    def svc(self) -> Service:
        svc: Service = self.app.state.service
        return svc

    @property
    def model(self) -> LiveReadModel:
        model: LiveReadModel = self.svc.state["live"]
        return model

    async def view(self, channel: str, **params: Any) -> dict[str, Any] | None:
        """The channel's view (None: 404). With a position, a 503 is retried like a client would
        (the projection may still be catching up with the topics, e.g. right after it started)."""
        for _ in range(20):
            r = await self.http.get(f"/live/{channel}", params=params)
            if r.status_code != 503 or "position" not in params:
                break
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@dataclass
class Live:
    a: Instance  # runs the projections
    b: Instance  # replica, near cache on
    c: Instance  # replica, near cache off
    kafka: KafkaClient
    database_url: str
    namespace: str


SETTINGS = {
    "position_wait_s": 1.0,
    "viewer_sweep_s": 0.2,
    "viewer_stale_intervals": 3.0,
    "sse_release_after_s": 0.2,
}


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgres"])
async def live(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    valkey_url: str,
    nats_url: str,
    kafka_bootstrap: str,
) -> AsyncIterator[Live]:
    tmp = tmp_path_factory.mktemp("liveinfo")
    async with module_database(request.param, str(tmp)) as db:
        with valkey_namespace("li"):

            def settings(name: str) -> RuntimeSettings:
                return RuntimeSettings(
                    database_url=db,
                    valkey_url=valkey_url,
                    nats_url=nats_url,
                    kafka_bootstrap=kafka_bootstrap,
                    spool_dir=Path(tmp) / name,
                )

            a = create_app(settings("a"), LiveinfoSettings(**SETTINGS), configure_logs=False)
            b = create_app(
                settings("b"), LiveinfoSettings(projections=False, **SETTINGS), configure_logs=False
            )
            c = create_app(
                settings("c"),
                LiveinfoSettings(projections=False, near_cache=False, **SETTINGS),
                configure_logs=False,
            )
            kafka = KafkaClient(kafka_bootstrap, client_id="liveinfo-test")
            async with (
                running_server(a, lifespan="on") as ua,
                running_server(b, lifespan="on") as ub,
                running_server(c, lifespan="on") as uc,
                httpx.AsyncClient(base_url=ua, timeout=10) as ha,
                httpx.AsyncClient(base_url=ub, timeout=10) as hb,
                httpx.AsyncClient(base_url=uc, timeout=10) as hc,
            ):
                svc: Service = a.state.service
                for runner in svc.runners.values():
                    await runner.wait_assigned()
                yield Live(
                    Instance(a, ha, ua),
                    Instance(b, hb, ub),
                    Instance(c, hc, uc),
                    kafka,
                    db,
                    svc.valkey.namespace if svc.valkey else "",
                )
            await kafka.close()
