"""What the contract test runs: one :class:`Target` per service, and the environment it runs in.

A target names the service, how its app is built from the shared :class:`RuntimeSettings` and a
scratch folder, and the credentials its requests carry. The backends it gets (a SQLite database,
Valkey, NATS, Kafka, the identity keys) follow from its ``ServiceSpec``: only those servers start.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from onair.service import RuntimeSettings, ServiceSpec
from onair.testing import IdentityIssuer

AppFactory = Callable[[RuntimeSettings, Path], Any]
Credentials = Callable[["Env"], Mapping[str, str] | Callable[[], Mapping[str, str]]]
Prepare = Callable[[str, "Env"], Awaitable[None]]


@dataclass
class Env:
    """What a target's factory and credentials may use: the servers it asked for, a scratch folder."""

    request: pytest.FixtureRequest
    tmp: Path

    @property
    def identity_issuer(self) -> IdentityIssuer:
        issuer: IdentityIssuer = self.request.getfixturevalue("identity_issuer")
        return issuer

    def settings(self, spec: ServiceSpec) -> RuntimeSettings:
        values: dict[str, Any] = {"spool_dir": self.tmp / "spool", "log_level": "WARNING"}
        if spec.migrations:
            values["database_url"] = f"sqlite+aiosqlite:///{self.tmp / f'{spec.name}.db'}"
        if spec.valkey or spec.tracking:
            values["valkey_url"] = self.request.getfixturevalue("valkey_url")
        if spec.nats:
            values["nats_url"] = self.request.getfixturevalue("nats_url")
        if spec.kafka or spec.projections is not None:
            values["kafka_bootstrap"] = self.request.getfixturevalue("kafka_bootstrap")
        if spec.identity:
            values["identity_jwks_url"] = self.identity_issuer.jwks_url
        return RuntimeSettings(**values)


def no_credentials(_: Env) -> Mapping[str, str]:
    return {}


def identity(username: str = "alice", roles: tuple[str, ...] = ("viewer",)) -> Credentials:
    """Credentials of a gateway-signed identity, signed afresh for every request (60 s tokens)."""

    def make(env: Env) -> Callable[[], Mapping[str, str]]:
        issuer = env.identity_issuer
        return lambda: issuer.headers(username=username, roles=roles)

    return make


def bearer(token: str) -> Credentials:
    return lambda _: {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Target:
    name: str
    spec: ServiceSpec
    app: AppFactory
    credentials: Credentials = no_credentials
    prepare: Prepare | None = None  # seed data the schema's examples point at

    @classmethod
    def service(
        cls,
        name: str,
        *,
        module: str | None = None,
        credentials: Credentials = no_credentials,
        prepare: Prepare | None = None,
        app: AppFactory | None = None,
    ) -> Target:
        """``onair_services.<name>.app`` (its ``SPEC`` and ``create_app(settings)``), or ``module``."""
        mod = importlib.import_module(module or f"onair_services.{name}.app")
        factory = app or (lambda settings, _tmp: mod.create_app(settings))
        return cls(name, mod.SPEC, factory, credentials, prepare)

    def __str__(self) -> str:
        return self.name


@contextmanager
def logging_kept() -> Iterator[None]:
    """A service's app configures process logging; leave it as it was for the other tests."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)
