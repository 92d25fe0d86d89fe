"""``onair migrate NAME``: run a service's Alembic migrations against its ``DATABASE_URL`` and exit.

What compose's one-shot ``migrate-<service>`` services and the k8s migration Jobs run before the
services start (which then set ``ONAIR_MIGRATE_ON_START=false``). ``--check`` changes nothing and
exits 0 only when the database is at the newest schema; with ``--wait S`` it keeps asking for up to
S seconds (the k8s init container that holds a service's pods until its migration Job is done).
"""

from __future__ import annotations

import asyncio
import importlib
import time
from typing import Annotated

import typer

from onair.cli.common import console, fail
from onair.cli.serve import service_exists


def command(
    name: Annotated[str, typer.Argument(help="The service whose database to migrate, e.g. wallet.")],
    check: Annotated[
        bool, typer.Option("--check", help="Change nothing: exit 0 if the schema is the newest, else 1.")
    ] = False,
    wait: Annotated[
        float,
        typer.Option(min=0, help="With --check: keep checking this many seconds before failing."),
    ] = 0.0,
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
    if wait and not check:
        fail("--wait goes with --check (a migration itself does not wait)")
    if check:
        _check(name, location, RuntimeSettings().database_url, wait)
        return

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


def _check(name: str, location: str, database_url: str, wait_s: float) -> None:
    """Exit 0 once the database is at the newest schema; fail naming what it is at after ``wait_s``."""
    from onair.db import create_engine
    from onair.db.migrations import schema_revisions

    async def revisions() -> tuple[set[str], set[str]]:
        engine = create_engine(database_url, pool_size=1)
        try:
            return await schema_revisions(engine, location)
        finally:
            await engine.dispose()

    deadline = time.monotonic() + wait_s
    while True:
        try:
            current, newest = asyncio.run(revisions())
        except Exception as exc:  # unreachable, not created yet, auth: all "not yet" while waiting
            state = f"database not readable ({type(exc).__name__}: {exc})"[:300]
        else:
            if current == newest:
                console.print(f"{name}: database at the newest schema ({', '.join(sorted(newest))})")
                return
            at = ", ".join(sorted(current)) or "no schema"
            state = f"database at {at}, newest is {', '.join(sorted(newest))}"
            if current - _known_revisions(location):
                state += " (the database has revisions this version does not know: newer code migrated it)"
        if time.monotonic() >= deadline:
            waited = f" after waiting {wait_s:g}s" if wait_s else ""
            fail(f"{name}: {state}{waited}; run 'onair migrate {name}'")
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


def _known_revisions(location: str) -> set[str]:
    from alembic.script import ScriptDirectory

    from onair.db.migrations import alembic_config

    return {rev.revision for rev in ScriptDirectory.from_config(alembic_config(location)).walk_revisions()}
