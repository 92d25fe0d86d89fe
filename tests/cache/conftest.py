"""Fixture ``stack``: a per-test namespace on the session Valkey; everything made is closed after."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from .helpers import Stack


@pytest.fixture
async def stack(valkey_url: str) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as exits:
        yield Stack(valkey_url, f"t{uuid.uuid4().hex[:10]}", exits)
