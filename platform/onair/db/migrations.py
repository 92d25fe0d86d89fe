"""Run a service's own Alembic migrations on its async engine.

A service keeps ``migrations/`` (``env.py`` + ``versions/``) in its package; its ``env.py`` is two
lines that call :func:`run_env`. ``migrate(engine, "onair_services.x:migrations")`` upgrades to head
on a connection of that engine, so the same code path serves the app start, the CLI and tests;
``schema_revisions(engine, location)`` tells whether a database is at head without changing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


def _script_location(location: str) -> str:
    """``package:subdir`` -> a filesystem path; a plain path passes through."""
    if ":" in location and not location.startswith("/"):
        package, sub = location.split(":", 1)
        return str(resources.files(package).joinpath(sub))
    return location


def alembic_config(location: str, version_table: str = "alembic_version") -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", _script_location(location))
    cfg.attributes["version_table"] = version_table
    return cfg


async def migrate(engine: AsyncEngine, location: str, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to ``revision`` with the scripts at ``location``."""
    cfg = alembic_config(location)

    def _upgrade(conn: Connection) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def schema_revisions(engine: AsyncEngine, location: str) -> tuple[set[str], set[str]]:
    """``(current, newest)`` revisions of the database behind ``engine``; equal when it is migrated.

    Changes nothing (what ``onair migrate NAME --check`` and the k8s init containers that wait for
    the migration Job ask). A database never migrated has no current revision.
    """
    cfg = alembic_config(location)
    newest = set(ScriptDirectory.from_config(cfg).get_heads())

    def _current(conn: Connection) -> set[str]:
        ctx = MigrationContext.configure(conn, opts={"version_table": cfg.attributes["version_table"]})
        return set(ctx.get_current_heads())

    async with engine.connect() as conn:
        current = await conn.run_sync(_current)
    return current, newest


def run_env(target_metadata: MetaData | Sequence[MetaData] | None) -> None:
    """Body of a service's ``env.py``: migrate on the connection ``migrate()`` handed over.

    ``target_metadata`` may list several (the service's own and ``onair.logstream.metadata``).
    """
    conn: Any = context.config.attributes.get("connection")
    if conn is None:
        raise RuntimeError("run migrations through onair.db.migrate(engine, location)")
    context.configure(
        connection=conn,
        target_metadata=target_metadata,
        render_as_batch=conn.dialect.name == "sqlite",
        version_table=context.config.attributes.get("version_table", "alembic_version"),
    )
    with context.begin_transaction():
        context.run_migrations()
