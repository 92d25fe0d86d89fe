"""media on real servers: one app per test module (a Kafka group join takes seconds on this broker).

Publish keys reach media the way liveapi sends them: ``media.broad_info.publish_key`` events
(docs/contracts.md), produced here and applied by media's own projection.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from onair.clients import KafkaClient
from onair.fanout.app import running_server
from onair.logstream import Envelope, new_event_id
from onair.service import RuntimeSettings, Service
from onair.testing import IdentityIssuer, TopicReader
from onair_services.media.app import create_app
from onair_services.media.live import SessionManager
from onair_services.media.settings import MediaSettings

STATUS = "media.live_stream.status"
METADATA = "media.live_stream.metadata"
SOURCE_1080P60 = {"height": 1080, "fps": 60, "codec": "h264", "bitrate_kbps": 6000}

# Short heartbeats and leases, so timeouts and expiries happen within a test.
FAST = {
    "heartbeat_interval_s": 0.3,
    "heartbeat_timeout_s": 1.0,
    "hello_timeout_s": 1.0,
    "lease_s": 1.5,
    "relog_interval_s": 0.5,
    "relog_grace_s": 0.3,
}


@dataclass
class Media:
    app: FastAPI
    url: str
    http: httpx.AsyncClient
    reader: TopicReader
    kafka: KafkaClient
    issuer: IdentityIssuer
    database_url: str
    tmp: Path

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ingest"

    @property
    def manager(self) -> SessionManager:
        svc: Service = self.app.state.service
        manager: SessionManager = svc.state["sessions"]
        return manager

    def owner(self, channel: str, *roles: str) -> dict[str, str]:
        return self.issuer.headers(username=channel, roles=roles or ("streamer",))

    async def add_key(self, channel: str, key: str, *, seq: int = 1, owner_id: str | None = None) -> None:
        """Log the key as liveapi does and wait until media's projection has it."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        await produce(
            self.kafka,
            "media.broad_info.publish_key",
            channel,
            seq,
            {"owner_id": owner_id or f"u-{channel}", "key_sha256": digest},
        )
        async with asyncio.timeout(30):
            while True:
                known = await self.manager.store.publish_key(channel)
                if known is not None and known.key_sha256 == digest:
                    return
                await asyncio.sleep(0.05)

    async def status(self, channel: str, n: int, timeout_s: float = 15.0) -> list[Any]:
        return await self.reader.wait_for(
            lambda evs: len(evs) >= n, topic=STATUS, entity=channel, timeout_s=timeout_s
        )


async def produce(
    kafka: KafkaClient, category: str, entity: str, seq: int | None, data: dict[str, Any]
) -> None:
    ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    envelope = Envelope(new_event_id(), ts, "liveapi", category, entity, seq, data)
    producer = await kafka.producer()
    try:
        await (await producer.send(category, envelope.to_bytes(), key=entity.encode()))
    finally:
        await kafka.release(producer)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def media(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, identity_issuer: IdentityIssuer
) -> AsyncIterator[Media]:
    tmp = tmp_path_factory.mktemp("media")
    database_url = f"sqlite+aiosqlite:///{tmp / 'media.db'}"
    settings = RuntimeSettings(
        database_url=database_url,
        kafka_bootstrap=kafka_bootstrap,
        spool_dir=tmp / "spool",
        identity_jwks_url=identity_issuer.jwks_url,
    )
    app = create_app(settings, MediaSettings(**FAST, instance_id="media-b"))
    kafka = KafkaClient(kafka_bootstrap, client_id="media-test")
    async with (
        kafka,
        TopicReader(kafka_bootstrap, [STATUS, METADATA]) as reader,
        running_server(app, lifespan="on") as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        svc: Service = app.state.service
        await svc.runners["media.publish_keys"].wait_assigned()
        yield Media(app, url, http, reader, kafka, identity_issuer, database_url, tmp)
