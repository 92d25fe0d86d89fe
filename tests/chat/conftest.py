"""Two chat apps on real servers, module-scoped (Kafka group joins take seconds on this broker).

``a`` runs the projections, ``b`` is a second chat process without them (as if its partitions
were elsewhere). Each has its own database session pool on one shared SQLite database, its own
Valkey client and tracker, its own NATS connection and fan-out bridge; both share the NATS
subject prefix, the JetStream streams and the Valkey namespace of the module.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from nats.js.api import StreamConfig

from onair.clients import KafkaClient, NatsClient
from onair.fanout.app import running_server
from onair.service import RuntimeSettings, Service
from onair.testing import IdentityIssuer
from onair_services.chat.app import create_app
from onair_services.chat.runtime import ChatRuntime
from onair_services.chat.settings import ChatSettings

from .helpers import eventually, module_database, options, produce, uid


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
    def chat(self) -> ChatRuntime:
        chat: ChatRuntime = self.svc.state["chat"]
        return chat


@dataclass
class Chat:
    a: Instance
    b: Instance
    kafka: KafkaClient
    nats: NatsClient  # the tests' own connection (the wallet's side, checks on streams)
    issuer: IdentityIssuer
    settings: ChatSettings
    prefix: str

    def who(self, username: str, *roles: str) -> dict[str, str]:
        return self.issuer.headers(username=username, roles=roles or ("viewer",))

    async def room(self, chat_mode: str = "open") -> str:
        """A new channel, known to both apps' room views."""
        channel = uid()
        await produce(self.kafka, [options(channel, chat_mode)])

        async def known() -> bool:
            ra = await self.a.http.get(f"/chat/{channel}/recent")
            rb = await self.b.http.get(f"/chat/{channel}/recent")
            return ra.status_code == 200 and rb.status_code == 200

        await eventually(known)
        return channel

    async def post(self, inst: Instance, channel: str, user: str, text: str, *roles: str) -> httpx.Response:
        return await inst.http.post(
            f"/chat/{channel}/messages", json={"text": text}, headers=self.who(user, *roles)
        )


SETTINGS: dict[str, Any] = {
    "history": 10,
    "room_retention": 20,
    "user_limit": 1000,
    "room_limit": 1000,
    "slow_mode_s": 30,
    "ws_hello_s": 0.3,
    "viewer_count_interval_s": 3600,
    "relay_interval_s": 0.5,
    "gc_freeze": False,
    "notify_cooldown_s": 0,
}


@contextmanager
def env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgres"])
async def chat(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    valkey_url: str,
    nats_url: str,
    kafka_bootstrap: str,
    identity_issuer: IdentityIssuer,
) -> AsyncIterator[Chat]:
    tmp: Path = tmp_path_factory.mktemp("chat")
    tag = uuid.uuid4().hex[:8]
    prefix = f"chat{tag}"
    names: dict[str, Any] = {
        "stream": f"CHAT_{tag}",
        "notify_stream": f"NOTIFY_{tag}",
        "donation_consumer": f"don_{tag}",
    }
    async with (
        module_database(request.param, str(tmp)) as database_url,
        NatsClient(nats_url, subject_prefix=prefix, name="chat-test") as nats,
    ):

        def runtime(name: str) -> RuntimeSettings:
            return RuntimeSettings(
                database_url=database_url,
                valkey_url=valkey_url,
                nats_url=nats_url,
                kafka_bootstrap=kafka_bootstrap,
                spool_dir=tmp / name,
                identity_jwks_url=identity_issuer.jwks_url,
            )

        js = nats.jetstream()
        wallet = f"WALLET_{tag}"  # the wallet's stream, as the wallet would make it
        await js.add_stream(StreamConfig(name=wallet, subjects=[nats.subject("wallet", "donation", ">")]))
        with env(ONAIR_NATS_SUBJECT_PREFIX=prefix, ONAIR_VALKEY_NAMESPACE=f"chat{tag}"):
            a = create_app(
                runtime("a"), ChatSettings(process_id="chat-a", **SETTINGS, **names), configure_logs=False
            )
            b = create_app(
                runtime("b"),
                ChatSettings(process_id="chat-b", projections=False, **SETTINGS, **names),
                configure_logs=False,
            )
            kafka = KafkaClient(kafka_bootstrap, client_id="chat-test")
            async with (
                running_server(a, lifespan="on") as ua,
                running_server(b, lifespan="on") as ub,
                httpx.AsyncClient(base_url=ua, timeout=10) as ha,
                httpx.AsyncClient(base_url=ub, timeout=10) as hb,
            ):
                svc: Service = a.state.service
                for runner in svc.runners.values():
                    await runner.wait_assigned()
                yield Chat(
                    Instance(a, ha, ua),
                    Instance(b, hb, ub),
                    kafka,
                    nats,
                    identity_issuer,
                    ChatSettings(**SETTINGS, **names),
                    prefix,
                )
            await kafka.close()
        for name in (wallet, names["stream"], names["notify_stream"]):
            await js.delete_stream(name)
