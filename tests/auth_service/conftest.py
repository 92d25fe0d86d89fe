"""Fixtures: a running auth app on real servers (database, Valkey, Kafka) and the gateway stand-in.

Every test gets its own Valkey namespace, so rate-limit windows and revocations of one test never
leak into another (the Valkey server is shared by the whole session).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from onair.service import RuntimeSettings
from onair.testing import IdentityIssuer
from onair_services.auth.app import create_app
from onair_services.auth.settings import AuthSettings

from .helpers import fast_settings, runtime, serve


@pytest.fixture(autouse=True)
def valkey_namespace(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("ONAIR_VALKEY_NAMESPACE", namespace)
    yield namespace


@dataclass
class Stack:
    """What a test needs to build auth apps against the session's servers."""

    database_url: str
    valkey_url: str
    kafka_bootstrap: str
    spool: Path
    identity: IdentityIssuer

    def runtime(self, **overrides: object) -> RuntimeSettings:
        return runtime(
            self.database_url,
            self.valkey_url,
            self.kafka_bootstrap,
            self.spool,
            self.identity.jwks_url,
            **overrides,
        )


@pytest.fixture
def stack(
    database_url: str, valkey_url: str, kafka_bootstrap: str, tmp_path: Path, identity_issuer: IdentityIssuer
) -> Stack:
    return Stack(database_url, valkey_url, kafka_bootstrap, tmp_path / "spool", identity_issuer)


@pytest.fixture
def sqlite_stack(
    valkey_url: str, kafka_bootstrap: str, tmp_path: Path, identity_issuer: IdentityIssuer
) -> Stack:
    """For tests whose claim does not depend on the SQL dialect."""
    return Stack(
        f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}",
        valkey_url,
        kafka_bootstrap,
        tmp_path / "spool",
        identity_issuer,
    )


@pytest.fixture
def auth_settings() -> AuthSettings:
    return fast_settings()


@pytest.fixture
async def auth_url(stack: Stack, auth_settings: AuthSettings) -> AsyncIterator[str]:
    """One auth app on the parametrised database (SQLite and PostgreSQL)."""
    async with serve(create_app(stack.runtime(), auth_settings)) as url:
        yield url


@pytest.fixture
async def sqlite_auth_url(sqlite_stack: Stack, auth_settings: AuthSettings) -> AsyncIterator[str]:
    async with serve(create_app(sqlite_stack.runtime(), auth_settings)) as url:
        yield url
