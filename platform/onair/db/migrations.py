"""Run a service's own Alembic migrations on its async engine.

A service keeps ``migrations/`` (``env.py`` + ``versions/``) in its package; its ``env.py`` is two
lines that call :func:`run_env`. ``migrate(engine, "onair_services.x:migrations")`` upgrades to head
on a connection of that engine, so the same code path serves the app start, the CLI and tests.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from alembic import command, context
from alembic.config import Config
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


def run_env(target_metadata: MetaData | None) -> None:
    """Body of a service's ``env.py``: migrate on the connection ``migrate()`` handed over."""
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
