"""The platform tables a projecting service keeps in its own database, and a portable upsert.

``metadata`` holds ``projection_offsets`` (next offset per projection/topic/partition, written in
the same transaction as the read model), ``projection_entity_positions`` (last applied position and
vote-counter state per projection/topic/entity) and ``projection_dead_letters``. A service includes
``metadata`` in its Alembic ``target_metadata`` and creates the tables in a migration with
:func:`create_tables` (tests and benchmarks call :func:`ensure_schema`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

metadata = MetaData()

projection_offsets = Table(
    "projection_offsets",
    metadata,
    Column("projection", String(200), primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True, autoincrement=False),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

projection_entity_positions = Table(
    "projection_entity_positions",
    metadata,
    Column("projection", String(200), primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("entity", String(500), primary_key=True),
    Column("seq", BigInteger, nullable=True),
    Column("ts_us", BigInteger, nullable=True),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("event_id", String(100), nullable=True),
    Column("vote_sum", Integer, nullable=True),
    Column("vote_window_us", BigInteger, nullable=True),
    Column("vote_state", String(200), nullable=True),
)

projection_dead_letters = Table(
    "projection_dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("projection", String(200), nullable=False, index=True),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=True),
    Column("reason", String(50), nullable=False),
    Column("error", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def create_tables(connection: Connection) -> None:
    """For a service's Alembic migration: ``def upgrade(): create_tables(op.get_bind())``."""
    metadata.create_all(connection, checkfirst=True)


def drop_tables(connection: Connection) -> None:
    """For a service's Alembic migration: ``def downgrade(): drop_tables(op.get_bind())``."""
    metadata.drop_all(connection, checkfirst=True)


async def ensure_schema(engine: AsyncEngine, extra: Iterable[MetaData] = ()) -> None:
    """Create the platform tables (and ``extra`` metadata) if missing: for tests and benchmarks."""
    async with engine.begin() as conn:
        for md in (metadata, *extra):
            await conn.run_sync(md.create_all)


async def upsert(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    update: Mapping[str, Any] | Sequence[str] | None = None,
) -> None:
    """``INSERT … ON CONFLICT (keys) DO UPDATE`` for SQLite and PostgreSQL.

    ``update`` is a list of columns to take from the new row (default: all non-key columns) or a
    mapping of column -> SQL expression (use :func:`excluded` to refer to the new row).
    """
    if not rows:
        return
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    if update is None:
        update = [c for c in rows[0] if c not in keys]
    sets = dict(update) if isinstance(update, Mapping) else {c: ins.excluded[c] for c in update}
    stmt = (
        ins.on_conflict_do_update(index_elements=list(keys), set_=sets)
        if sets
        else (ins.on_conflict_do_nothing(index_elements=list(keys)))
    )
    await session.execute(stmt, list(rows))


def excluded(session: AsyncSession, table: Table) -> Any:
    """The ``excluded`` pseudo-table of an upsert on ``table``, for ``update`` expressions."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).excluded
