"""Fixtures: signing keys and a real JWKS issuer (uvicorn on a free port)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from onair.auth import SigningKey

from .helpers import Issuer


@pytest.fixture(scope="session")
def ed_key() -> SigningKey:
    return SigningKey.generate("EdDSA")


@pytest.fixture(scope="session")
def ec_key() -> SigningKey:
    return SigningKey.generate("ES256")


@pytest.fixture
async def issuer(ed_key: SigningKey, ec_key: SigningKey) -> AsyncIterator[Issuer]:
    server = Issuer(ed_key, ec_key)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
