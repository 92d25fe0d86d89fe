"""Engines for both databases, SQLite pragmas, and per-service Alembic migrations."""

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from onair.db import create_engine, migrate, normalize_url, session_factory

MIGRATIONS = str(Path(__file__).parent / "demo_migrations")


def test_normalize_url() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    with pytest.raises(ValueError, match="unsupported database URL scheme 'mysql'"):
        normalize_url("mysql://h/db")
    with pytest.raises(ValueError, match="has no scheme"):
        normalize_url("just-a-file.db")


async def test_migrate_and_use_session(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine, MIGRATIONS)
        await migrate(engine, MIGRATIONS)  # already at head: no-op
        sessions = session_factory(engine)
        async with sessions() as session, session.begin():
            await session.execute(text("INSERT INTO demo_item (name) VALUES ('a'), ('b')"))
        async with sessions() as session:
            names = (await session.execute(text("SELECT name FROM demo_item ORDER BY name"))).scalars().all()
            version = (await session.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        assert names == ["a", "b"]
        assert version == "0001"
    finally:
        await engine.dispose()


async def test_sqlite_runs_in_wal_with_busy_timeout(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'nested' / 'x.db'}")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one() == 5000
    finally:
        await engine.dispose()


async def test_scratch_database_names_are_checked() -> None:
    from onair.db.admin import create_database

    with pytest.raises(ValueError, match="must be lowercase letters"):
        await create_database("postgresql://postgres@127.0.0.1:1/postgres", 'x"; DROP DATABASE test; --')


async def test_write_lock_serializes_read_check_write_on_sqlite(tmp_path: Path) -> None:
    """SQLite has no row locks: ``with_write_lock`` begins with BEGIN IMMEDIATE, so a read and the
    write that depends on it see no other writer in between (no lost update)."""
    from onair.db import with_write_lock

    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
            await conn.execute(text("INSERT INTO counter VALUES (1, 0)"))
        locked = with_write_lock(engine)

        async def increment() -> None:
            async with locked.begin() as conn:
                n = (await conn.execute(text("SELECT n FROM counter WHERE id = 1"))).scalar_one()
                await asyncio.sleep(0.001)  # another writer would slip in here without the lock
                await conn.execute(text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})

        await asyncio.gather(*(increment() for _ in range(30)))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT n FROM counter"))).scalar_one() == 30
        async with locked.connect() as conn:  # the engine's other transactions are unchanged
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def test_snapshot_reads_see_one_state(database_url: str) -> None:
    from onair.db import with_snapshot

    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE snap (n INTEGER NOT NULL)"))
            await conn.execute(text("INSERT INTO snap VALUES (1)"))
        async with with_snapshot(engine).connect() as reader, reader.begin():
            first = (await reader.execute(text("SELECT SUM(n) FROM snap"))).scalar_one()
            async with engine.begin() as writer:
                await writer.execute(text("INSERT INTO snap VALUES (41)"))
            again = (await reader.execute(text("SELECT SUM(n) FROM snap"))).scalar_one()
        assert first == again == 1
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT SUM(n) FROM snap"))).scalar_one() == 42
    finally:
        await engine.dispose()
