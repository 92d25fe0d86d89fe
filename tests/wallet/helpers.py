"""Shared pieces of the wallet tests: a module database, users, a client acting for a user."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from onair.bench.wallet_harness import BenchUser, publish_users
from onair.db import create_engine
from onair.db.admin import create_database, drop_database
from onair.testing import POSTGRES_ENV, IdentityIssuer


def uid(prefix: str = "w") -> str:
    """A fresh username (``^[a-z0-9_]{3,32}$``): the auth topic is shared by the whole session."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def module_database(kind: str, tmp: str) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp}/wallet.db"
        return
    admin = os.environ.get(POSTGRES_ENV)
    if not admin:
        pytest.skip(f"{POSTGRES_ENV} is not set; PostgreSQL cases not run")
    name = f"onair_t_{uuid.uuid4().hex[:12]}"
    url = await create_database(admin, name)
    try:
        yield url
    finally:
        await drop_database(admin, name)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        await asyncio.sleep(0.1)


class Person:
    """A user of the wallet API: sends requests with a fresh gateway identity each time."""

    def __init__(self, http: httpx.AsyncClient, issuer: IdentityIssuer, user: BenchUser) -> None:
        self.http = http
        self.issuer = issuer
        self.user = user

    @property
    def name(self) -> str:
        return self.user.username

    @property
    def id(self) -> str:
        return self.user.user_id

    def headers(self, key: str | None = None, **extra: str) -> dict[str, str]:
        h = self.issuer.headers(self.user.username, self.user.roles, self.user.user_id)
        if key is not None:
            h["Idempotency-Key"] = key
        return {**h, **extra}

    async def buy(self, amount: int, key: str | None = None, **headers: str) -> httpx.Response:
        return await self.http.post(
            "/wallet/purchase",
            json={"amount": amount},
            headers=self.headers(key or uuid.uuid4().hex, **headers),
        )

    async def donate(
        self, channel: str, amount: Any, key: str | None = None, message: str | None = None, **headers: str
    ) -> httpx.Response:
        body: dict[str, Any] = {"channel": channel, "amount": amount}
        if message is not None:
            body["message"] = message
        return await self.http.post(
            "/wallet/donations", json=body, headers=self.headers(key or uuid.uuid4().hex, **headers)
        )

    async def balance(self) -> tuple[int, int]:
        r = await self.http.get("/wallet/balance", headers=self.headers())
        assert r.status_code == 200, r.text
        return r.json()["balance"], r.json()["held"]


async def make_people(
    http: httpx.AsyncClient,
    issuer: IdentityIssuer,
    kafka_bootstrap: str,
    viewers: int,
    streamers: int,
) -> tuple[list[Person], list[Person]]:
    """Sign up users (``auth.user.created``) and wait until the wallet knows the channels."""
    run = uuid.uuid4().hex[:8]
    v = [BenchUser(f"v{run}_{i}", f"u-v{run}-{i}", ("viewer",)) for i in range(viewers)]
    s = [BenchUser(f"s{run}_{i}", f"u-s{run}-{i}", ("viewer", "streamer")) for i in range(streamers)]
    await publish_users(kafka_bootstrap, [*v, *s])

    async def known() -> bool:
        for streamer in s:
            if (await http.get(f"/wallet/top-donors/{streamer.username}")).status_code != 200:
                return False
        return True

    await eventually(known, 60, "the wallet.users projection applied the new users")
    return [Person(http, issuer, u) for u in v], [Person(http, issuer, u) for u in s]


async def seeded_people(
    http: httpx.AsyncClient, issuer: IdentityIssuer, database_url: str, viewers: int, streamers: int
) -> tuple[list[Person], list[Person]]:
    """Users written straight into the ``wallet.users`` projection of a migrated database (for tests
    about something else than the projection: no wait for a consumer group to join)."""
    run = uuid.uuid4().hex[:8]
    v = [BenchUser(f"v{run}_{i}", f"u-v{run}-{i}", ("viewer",)) for i in range(viewers)]
    s = [BenchUser(f"s{run}_{i}", f"u-s{run}-{i}", ("viewer", "streamer")) for i in range(streamers)]
    for u in (*v, *s):
        await sql(
            database_url,
            "INSERT INTO users (user_id, username, streamer) VALUES (:i, :n, :s)",
            i=u.user_id,
            n=u.username,
            s="streamer" in u.roles,
        )
    return [Person(http, issuer, u) for u in v], [Person(http, issuer, u) for u in s]


async def migrated(database_url: str) -> None:
    from onair.db import migrate

    engine = create_engine(database_url)
    try:
        await migrate(engine, "onair_services.wallet:migrations")
    finally:
        await engine.dispose()


async def sql(database_url: str, statement: str, **params: Any) -> list[Any]:
    """Run one statement on the wallet's database (tests that look at or tamper with it)."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


def totals(people: Sequence[Person]) -> list[str]:
    return [p.name for p in people]
