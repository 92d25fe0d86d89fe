"""How the wallet reaches its database: the locking engine for writes, plain and snapshot reads.

Writes that move money go through :mod:`.writer` (one batching writer per process). This module
gives it, and the few other writers (creating accounts, expiring idempotency keys), a transaction
that may lock: ``BEGIN IMMEDIATE`` on SQLite (:func:`onair.db.with_write_lock`), row locks taken
explicitly on PostgreSQL. A deadlock or serialization failure (which the fixed lock order should
make impossible) or a busy SQLite database is retried a few times with the whole function.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from onair.db import is_sqlite, with_snapshot, with_write_lock

T = TypeVar("T")

# PostgreSQL SQLSTATEs worth a retry of the whole transaction.
_RETRY_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
WRITE_RETRIES = 4


def now_ms() -> int:
    return int(time.time() * 1000)


def retryable(exc: DBAPIError) -> bool:
    """A conflict that a second run of the same transaction may not meet."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code in _RETRY_SQLSTATES:
        return True
    text = str(orig).lower()
    return "database is locked" in text or "database is busy" in text


async def backoff(attempt: int) -> None:
    await asyncio.sleep(0.01 * (2**attempt) * (1 + random.random()))


def dialect_insert(conn: AsyncConnection, table: Table) -> Any:
    """``INSERT`` with ``on_conflict_do_nothing/update`` for the connection's dialect."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


class WalletDb:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sqlite = is_sqlite(engine)
        self.writer = with_write_lock(engine)
        self._snapshot = with_snapshot(engine)

    async def write(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``fn(conn)`` in one locking transaction (retried whole on a transient conflict)."""
        for attempt in range(WRITE_RETRIES):
            try:
                async with self.writer.begin() as conn:
                    return await fn(conn)
            except DBAPIError as exc:
                if attempt + 1 < WRITE_RETRIES and retryable(exc):
                    await backoff(attempt)
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for plain reads (each statement sees committed data)."""
        async with self.engine.connect() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction in which every query sees the same snapshot (the audit)."""
        async with self._snapshot.connect() as conn, conn.begin():
            yield conn
