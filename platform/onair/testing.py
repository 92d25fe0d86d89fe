"""Pytest fixtures on real servers, started by the same code as ``onair devstack up``.

Enable with ``pytest_plugins = ["onair.testing"]``. Session-wide: ``devstack`` (Valkey, NATS, S3,
Kafka with memory storage), ``valkey_url``, ``nats_url``, ``kafka_bootstrap``, ``s3_endpoint``.
Per test: ``database_url`` (parametrised: a fresh SQLite file and a fresh PostgreSQL database from
``ONAIR_TEST_POSTGRES_URL``), ``servers`` (stop/start/restart a session server mid-test; all are
running again afterwards) and ``private_devstack`` (a stack of the test's own, e.g. a broker with
S3 storage that survives restarts). ``identity_issuer`` (session) stands in for the gateway: it
serves its identity JWKS over HTTP and signs ``X-Onair-Identity`` headers for tests of a service.
:class:`TopicReader` reads log-event topics from the beginning (no consumer group) to assert events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from onair.auth.standin import GatewayStandIn
from onair.db.admin import create_database, drop_database
from onair.devstack import Devstack, RunningServer

POSTGRES_ENV = "ONAIR_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def devstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    stack = Devstack(tmp_path_factory.mktemp("devstack"))
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def valkey_url(devstack: Devstack) -> str:
    return devstack.env()["ONAIR_VALKEY_URL"]


@pytest.fixture(scope="session")
def nats_url(devstack: Devstack) -> str:
    return devstack.env()["ONAIR_NATS_URL"]


@pytest.fixture(scope="session")
def kafka_bootstrap(devstack: Devstack) -> str:
    return devstack.env()["ONAIR_KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="session")
def s3_endpoint(devstack: Devstack) -> str:
    env = devstack.env()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        os.environ.setdefault(key, env[key])
    return env["ONAIR_S3_ENDPOINT_URL"]


class ServerControl:
    """Stop, start or restart servers of the session stack; ``restore()`` starts any left down."""

    def __init__(self, stack: Devstack) -> None:
        self.stack = stack
        self._touched: set[str] = set()

    def stop(self, name: str, *, hard: bool = False) -> RunningServer:
        self._touched.add(name)
        return self.stack.stop_server(name, hard=hard)

    def start(self, name: str) -> RunningServer:
        return self.stack.start_server(name)

    def restart(self, name: str, *, hard: bool = False) -> RunningServer:
        self._touched.add(name)
        return self.stack.restart_server(name, hard=hard)

    def restore(self) -> None:
        for name in sorted(self._touched):
            self.stack.start_server(name)


@pytest.fixture
def servers(devstack: Devstack) -> Iterator[ServerControl]:
    control = ServerControl(devstack)
    try:
        yield control
    finally:
        control.restore()


@pytest.fixture
def private_devstack(tmp_path: Path) -> Iterator[Callable[..., Devstack]]:
    """Factory: ``stack = private_devstack(servers=("s3", "kafka"), kafka_storage="s3")``."""
    made: list[Devstack] = []

    def make(**kwargs: object) -> Devstack:
        stack = Devstack(tmp_path / f"stack{len(made)}", **kwargs)  # type: ignore[arg-type]
        made.append(stack)
        stack.up()
        return stack

    try:
        yield make
    finally:
        for stack in made:
            stack.down()


def _postgres_admin_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database per test: SQLite file, or a new PostgreSQL database (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    admin = _postgres_admin_url()
    if admin is None:
        pytest.skip(f"{POSTGRES_ENV} is not set (.ci/run sets it); PostgreSQL cases not run")
    name = f"onair_t_{uuid.uuid4().hex[:12]}"
    url = asyncio.run(create_database(admin, name))
    try:
        yield url
    finally:
        asyncio.run(drop_database(admin, name))


#: The gateway stand-in the ``identity_issuer`` fixture yields (see :mod:`onair.auth.standin`).
IdentityIssuer = GatewayStandIn


@pytest.fixture(scope="session")
def identity_issuer() -> Iterator[IdentityIssuer]:
    issuer = IdentityIssuer()
    try:
        yield issuer
    finally:
        issuer.close()


class TopicReader:
    """Reads log-event topics from the beginning in the background, for tests that assert events.

    No consumer group (partitions are assigned directly), so no group join to wait for::

        async with TopicReader(kafka_bootstrap, ["media.live_stream.status"]) as reader:
            ...
            events = await reader.wait_for(lambda evs: len(evs) >= 2, entity="ch42")

    ``events(topic=..., entity=...)`` is what arrived so far (envelopes, in offset order per
    partition); ``wait_for`` polls it until the predicate holds (``TimeoutError`` otherwise).
    """

    def __init__(self, bootstrap: str, topics: Iterable[str]) -> None:
        from onair.clients import KafkaClient

        self.kafka = KafkaClient(bootstrap, client_id="onair-test-reader")
        self.topics = list(topics)
        self.records: list[tuple[str, Any]] = []  # (topic, Envelope)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TopicReader:
        from aiokafka import TopicPartition

        try:
            await self.kafka.ensure_topics(self.topics)
            consumer = await self.kafka.consumer(group_id=None, fetch_max_wait_ms=50)
            await consumer.topics()  # a metadata refresh: the partitions of the topics just made
            parts = [
                TopicPartition(self.kafka.topic(t), p)
                for t in self.topics
                for p in sorted(consumer.partitions_for_topic(self.kafka.topic(t)) or ())
            ]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
        except BaseException:
            await self.kafka.close()
            raise
        self._task = asyncio.create_task(self._run(consumer))
        return self

    async def _run(self, consumer: Any) -> None:
        from onair.logstream import Envelope

        while True:
            batches = await consumer.getmany(timeout_ms=50)
            for tp, records in batches.items():
                for record in records:
                    self.records.append((tp.topic, Envelope.from_bytes(record.value)))

    def events(self, *, topic: str | None = None, entity: str | None = None) -> list[Any]:
        return [
            e
            for t, e in self.records
            if (topic is None or t == self.kafka.topic(topic)) and (entity is None or e.entity == entity)
        ]

    async def wait_for(
        self,
        check: Callable[[list[Any]], bool],
        *,
        topic: str | None = None,
        entity: str | None = None,
        timeout_s: float = 15.0,
    ) -> list[Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                found = self.events(topic=topic, entity=entity)
                if check(found):
                    return found
                if self._task is not None and self._task.done():
                    self._task.result()  # the reader crashed: raise its error
                await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        await self.kafka.close()
