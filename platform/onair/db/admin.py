"""PostgreSQL database administration for tests and benchmarks: create and drop a scratch database."""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _check(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"database name {name!r} must be lowercase letters, digits and _ (at most 63)")
    return name


async def _execute(server_url: str, sql: str) -> None:
    import asyncpg

    u = make_url(server_url)
    conn = await asyncpg.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username or "postgres",
        password=u.password,
        database=u.database or "postgres",
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``server_url``; return its asyncpg URL."""
    await _execute(server_url, f'CREATE DATABASE "{_check(name)}"')
    url = make_url(server_url).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False)


async def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` (disconnecting its sessions) if it exists."""
    await _execute(server_url, f'DROP DATABASE IF EXISTS "{_check(name)}" WITH (FORCE)')
