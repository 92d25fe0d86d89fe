"""Async engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg).

Transactions that read, check and then write (money, counters) need the database to keep anyone
else out between the read and the write. On PostgreSQL that is ``SELECT ... FOR UPDATE`` on the
rows concerned. On SQLite there are no row locks: :func:`with_write_lock` gives an engine whose
transactions begin with ``BEGIN IMMEDIATE`` (the database's one write lock, taken at BEGIN and
waited for with the busy timeout), and :func:`with_snapshot` one whose reads all see one snapshot
(a real ``BEGIN`` on SQLite, ``REPEATABLE READ`` on PostgreSQL) for consistent multi-query reports.
Engines made by :func:`create_engine` keep the driver's default behaviour otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 5000
#: Execution option: how a SQLite transaction begins ("DEFERRED", "IMMEDIATE" or "EXCLUSIVE").
#: Unset, the driver's own behaviour is kept (pysqlite begins implicitly before the first write).
SQLITE_BEGIN = "onair_sqlite_begin"
_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
}


def normalize_url(url: str) -> str:
    """Map a plain ``postgresql://`` / ``sqlite:///`` URL to its async driver."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"database URL {url!r} has no scheme (e.g. sqlite:///file.db or postgresql://...)")
    scheme = _DRIVERS.get(scheme, scheme)
    if scheme not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise ValueError(f"unsupported database URL scheme {scheme!r}: use SQLite or PostgreSQL")
    return f"{scheme}://{rest}"


def is_sqlite(url_or_engine: str | AsyncEngine) -> bool:
    url = (
        url_or_engine.url
        if isinstance(url_or_engine, AsyncEngine)
        else make_url(normalize_url(url_or_engine))
    )
    return url.get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    """Emit ``BEGIN <mode>`` ourselves when the connection asks for a mode (see SQLITE_BEGIN)."""
    mode = conn.get_execution_options().get(SQLITE_BEGIN)
    dbapi_conn: Any = conn.connection.dbapi_connection
    if mode is None:
        if dbapi_conn.isolation_level is None:  # a connection a BEGIN-mode transaction used before
            dbapi_conn.isolation_level = ""  # the driver's implicit BEGIN again
        return
    if mode not in _BEGIN_MODES:
        raise ValueError(f"{SQLITE_BEGIN} must be one of {sorted(_BEGIN_MODES)}, got {mode!r}")
    if dbapi_conn.isolation_level is not None:
        dbapi_conn.isolation_level = None  # the driver must not open a transaction of its own
    conn.exec_driver_sql(f"BEGIN {mode}")


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    url = normalize_url(url)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, poolclass=NullPool)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def with_write_lock(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` (same pool) for read-check-write transactions.

    SQLite: every transaction begins with ``BEGIN IMMEDIATE``, so it holds the database's write
    lock from its first read to its commit; a second writer waits at BEGIN (busy timeout) instead
    of failing half way or writing on a stale read. PostgreSQL: unchanged; lock the rows you will
    change with ``SELECT ... FOR UPDATE`` (in one fixed order, so two transactions never deadlock).
    """
    if is_sqlite(engine):
        return engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
    return engine


def with_snapshot(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` (same pool) whose transactions read one consistent snapshot (reports, audits).

    SQLite: a real ``BEGIN`` (the driver would otherwise run each SELECT on its own); PostgreSQL:
    ``REPEATABLE READ``. Use it for reads only.
    """
    if is_sqlite(engine):
        return engine.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
    return engine.execution_options(isolation_level="REPEATABLE READ")
