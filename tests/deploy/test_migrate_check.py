"""`onair migrate NAME --check [--wait S]`: what the k8s init containers run to hold a service's
pods until its migration Job brought the database to the newest schema. It changes nothing."""

import sys
import time
import types
from pathlib import Path

import pytest
from sqlalchemy import inspect as sa_inspect
from typer.testing import CliRunner

from onair.cli import migrate as migrate_cli
from onair.cli.main import app
from onair.db import create_engine

MIGRATIONS = str(Path(__file__).resolve().parents[1] / "foundation" / "demo_migrations")
NAME = "deploycheck"


@pytest.fixture
def demo_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service package ``onair_services.deploycheck`` whose SPEC points at the demo migrations."""
    module = types.ModuleType(f"onair_services.{NAME}.app")
    module.SPEC = types.SimpleNamespace(migrations=MIGRATIONS)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, f"onair_services.{NAME}.app", module)
    monkeypatch.setattr(migrate_cli, "service_exists", lambda name: name == NAME)


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: sa_inspect(c).get_table_names()))
    finally:
        await engine.dispose()


def _run(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["migrate", NAME, *args], env={"DATABASE_URL": url})
    return result.exit_code, result.output


def test_check_fails_until_migrated_and_changes_nothing(demo_service: None, database_url: str) -> None:
    import asyncio

    code, out = _run(database_url, "--check")
    assert code == 1
    assert "no schema" in out and "newest is" in out and f"onair migrate {NAME}" in out
    assert "alembic_version" not in asyncio.run(_tables(database_url))  # nothing written

    assert _run(database_url)[0] == 0
    code, out = _run(database_url, "--check")
    assert code == 0, out
    assert "at the newest schema" in out


def test_wait_gives_up_after_the_time_given(demo_service: None, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'never-migrated.db'}"
    started = time.monotonic()
    code, out = _run(url, "--check", "--wait", "1")
    assert code == 1
    assert time.monotonic() - started >= 1.0
    assert "after waiting 1s" in out


def test_wait_needs_check_and_a_database_that_answers(demo_service: None) -> None:
    code, out = _run("sqlite+aiosqlite:///:memory:", "--wait", "5")
    assert code == 1 and "--wait goes with --check" in out
    code, out = _run("postgresql://nobody@127.0.0.1:9/none", "--check")
    assert code == 1 and "database not readable" in out


def test_check_says_when_newer_code_migrated_the_database(demo_service: None, tmp_path: Path) -> None:
    """A rollback to an image older than the schema: the pods wait, and the message says why."""
    import asyncio

    from sqlalchemy import text

    url = f"sqlite+aiosqlite:///{tmp_path / 'ahead.db'}"
    assert _run(url)[0] == 0

    async def move_ahead() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE alembic_version SET version_num = 'f00dcafe0001'"))
        finally:
            await engine.dispose()

    asyncio.run(move_ahead())
    code, out = _run(url, "--check")
    assert code == 1
    assert "f00dcafe0001" in out and "does not know" in out
