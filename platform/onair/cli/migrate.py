"""``onair migrate NAME``: run a service's Alembic migrations against its ``DATABASE_URL`` and exit.

What compose's one-shot ``migrate`` service and the k8s migration Jobs run before the services
start (which then set ``ONAIR_MIGRATE_ON_START=false``).
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Annotated

import typer

from onair.cli.common import console, fail
from onair.cli.serve import service_exists


def command(
    name: Annotated[str, typer.Argument(help="The service whose database to migrate, e.g. wallet.")],
) -> None:
    """Upgrade a service's database (its DATABASE_URL) to its newest schema."""
    from onair.db import create_engine, migrate
    from onair.service.settings import RuntimeSettings

    if not service_exists(name):
        fail(f"no service {name!r}: expected a package onair_services.{name} with an app module")
    spec = getattr(importlib.import_module(f"onair_services.{name}.app"), "SPEC", None)
    location = getattr(spec, "migrations", None)
    if not location:
        fail(f"service {name!r} has no database migrations")

    async def run() -> None:
        engine = create_engine(RuntimeSettings().database_url)
        try:
            await migrate(engine, location)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except OSError as exc:
        fail(f"database unreachable: {exc}")
    console.print(f"{name}: database migrated to the newest schema")
