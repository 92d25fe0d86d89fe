"""Pytest fixtures on real servers, started by the same code as ``onair devstack up``.

Enable with ``pytest_plugins = ["onair.testing"]``. Session-wide: ``devstack`` (Valkey, NATS, S3,
Kafka with memory storage), ``valkey_url``, ``nats_url``, ``kafka_bootstrap``, ``s3_endpoint``.
Per test: ``database_url`` (parametrised: a fresh SQLite file and a fresh PostgreSQL database from
``ONAIR_TEST_POSTGRES_URL``), ``servers`` (stop/start/restart a session server mid-test; all are
running again afterwards) and ``private_devstack`` (a stack of the test's own, e.g. a broker with
S3 storage that survives restarts). ``identity_issuer`` (session) stands in for the gateway: it
serves its identity JWKS over HTTP and signs ``X-Onair-Identity`` headers for tests of a service.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

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


class IdentityIssuer:
    """A gateway stand-in for service tests: its JWKS over HTTP, and signed identity headers.

    ``issuer.jwks_url`` goes into ``RuntimeSettings(identity_jwks_url=...)``;
    ``issuer.headers(username="alice", roles=("streamer",))`` -> ``{"X-Onair-Identity": token}``.
    The user id defaults to ``u-<username>``. ``requests`` counts JWKS fetches.
    """

    def __init__(self) -> None:
        from onair.auth import IDENTITY_HEADER, IdentitySigner, SigningKey, jwks_document

        self.key = SigningKey.generate()
        self.signer = IdentitySigner(self.key, ttl_s=60)
        self.header_name = IDENTITY_HEADER
        body = orjson.dumps(jwks_document([self.key]))
        self.requests = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="identity-jwks", daemon=True)
        self._thread.start()
        self.jwks_url = f"http://127.0.0.1:{self._server.server_port}/.well-known/identity-jwks.json"

    def token(
        self,
        username: str = "alice",
        roles: Iterable[str] = ("viewer",),
        user_id: str | None = None,
        request_id: str | None = None,
    ) -> str:
        return self.signer.sign_for(user_id or f"u-{username}", username, roles, request_id)

    def headers(
        self, username: str = "alice", roles: Iterable[str] = ("viewer",), user_id: str | None = None
    ) -> dict[str, str]:
        return {self.header_name: self.token(username, roles, user_id)}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def identity_issuer() -> Iterator[IdentityIssuer]:
    issuer = IdentityIssuer()
    try:
        yield issuer
    finally:
        issuer.close()
