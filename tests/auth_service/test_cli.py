"""``onair auth``: rotate-key and list-keys against a running service's database, create-admin, errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from onair.cli.main import app as onair
from onair.db import create_engine, migrate
from onair_services.auth.app import create_app

from .conftest import Stack
from .helpers import (
    PASSWORD,
    client,
    fast_settings,
    gateway_verifier,
    login_body,
    new_username,
    serve,
    signup,
)

SHORT_LIVES = {  # the CLI reads the same settings as the service: short lifetimes, quick polls
    "ONAIR_AUTH_ACCESS_TOKEN_MAX_LIFETIME_S": "2",
    "ONAIR_AUTH_ACCESS_TOKEN_TTL_S": "2",
    "ONAIR_AUTH_LEEWAY_S": "0",
    "ONAIR_AUTH_KEY_RETIRE_MARGIN_S": "0",
    "ONAIR_AUTH_KEY_POLL_INTERVAL_S": "0.25",
    "ONAIR_AUTH_JWKS_MIN_REFETCH_INTERVAL_S": "1",
}


def _cli(args: list[str], env: Mapping[str, str], stdin: str | None = None) -> Result:
    return CliRunner().invoke(onair, args, env=dict(env), input=stdin)


async def _acli(args: list[str], env: Mapping[str, str], stdin: str | None = None) -> Result:
    return await asyncio.to_thread(_cli, args, env, stdin)


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def _kids(api: httpx.AsyncClient) -> set[str]:
    return {k["kid"] for k in (await api.get("/.well-known/jwks.json")).json()["keys"]}


async def _until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)


async def test_rotate_key_reaches_the_running_service_and_the_old_key_retires(
    sqlite_stack: Stack, valkey_url: str
) -> None:
    env = {"DATABASE_URL": sqlite_stack.database_url, **SHORT_LIVES}
    settings = fast_settings(
        access_token_max_lifetime_s=2,
        access_token_ttl_s=2,
        leeway_s=0,
        key_retire_margin_s=0,
        jwks_min_refetch_interval_s=1,
    )
    async with serve(create_app(sqlite_stack.runtime(), settings)) as url, client(url) as api:
        (first,) = _json(await _acli(["auth", "list-keys", "--json"], env))
        assert first["state"] == "signing" and first["alg"] == "EdDSA" and first["signs_until"] is None

        rotated = _json(await _acli(["auth", "rotate-key", "--json"], env))
        new = rotated["new"]
        assert [r["kid"] for r in rotated["replaced"]] == [first["kid"]] and rotated["lead_s"] == 2.5
        await _until(lambda: _has(api, new["kid"]), 2, "the service publishes the new key without a restart")
        states = {k["kid"]: k["state"] for k in _json(await _acli(["auth", "list-keys", "--json"], env))}
        assert states == {first["kid"]: "signing", new["kid"]: "pending"}

        name = new_username("cli")
        await signup(api, name)
        async with gateway_verifier(f"{url}/.well-known/jwks.json", valkey_url, settings) as gw:
            assert (await gw.tokens.verify((await login_body(api, name))["access_token"])).kid == first["kid"]
            await asyncio.sleep(2.5 + 0.5)
            assert (await gw.tokens.verify((await login_body(api, name))["access_token"])).kid == new["kid"]
        # the old key leaves the JWKS once its last token expired (2 s after it stopped signing)
        await _until(lambda: _gone(api, first["kid"]), 5, "the retired key leaves the JWKS")
        assert await _kids(api) == {new["kid"]}

        again = _json(await _acli(["auth", "rotate-key", "--alg", "ES256", "--lead-s", "0.5", "--json"], env))
        assert again["deleted"] == [first["kid"]] and again["new"]["alg"] == "ES256"
        await asyncio.sleep(0.5 + 0.5)
        async with gateway_verifier(f"{url}/.well-known/jwks.json", valkey_url, settings) as gw:
            claims = await gw.tokens.verify((await login_body(api, name))["access_token"])
        assert claims.alg == "ES256" and claims.kid == again["new"]["kid"]
    table = await _acli(["auth", "list-keys"], {**env, "COLUMNS": "200"})
    assert table.exit_code == 0 and "retiring" in table.stdout and "signing" in table.stdout


async def _has(api: httpx.AsyncClient, kid: str) -> bool:
    return kid in await _kids(api)


async def _gone(api: httpx.AsyncClient, kid: str) -> bool:
    return kid not in await _kids(api)


async def test_create_admin_then_log_in_as_admin(sqlite_stack: Stack, valkey_url: str) -> None:
    env = {"DATABASE_URL": sqlite_stack.database_url, "ONAIR_AUTH_ARGON2_MEMORY_KIB": "1024"}
    async with serve(create_app(sqlite_stack.runtime(), fast_settings())) as url, client(url) as api:
        name = new_username("root")
        made = await _acli(["auth", "create-admin", name, "--password-stdin"], env, stdin=f"{PASSWORD}\n")
        assert made.exit_code == 0, made.output
        tokens = await login_body(api, name)
        assert tokens["user"]["roles"] == ["admin", "viewer"]
        async with gateway_verifier(f"{url}/.well-known/jwks.json", valkey_url) as gw:
            assert (await gw.tokens.verify(tokens["access_token"]))["roles"] == ["admin", "viewer"]

        exists = await _acli(["auth", "create-admin", name, "--password-stdin"], env, stdin=f"{PASSWORD}\n")
        assert exists.exit_code == 1 and "--promote" in exists.stderr
        weak = await _acli(
            ["auth", "create-admin", new_username(), "--password-stdin"], env, stdin="password123\n"
        )
        assert weak.exit_code == 1 and "password" in weak.stderr and "password123" not in weak.output

        viewer = new_username("promo")
        await signup(api, viewer)
        promoted = await _acli(["auth", "create-admin", viewer, "--promote"], env)
        assert promoted.exit_code == 0, promoted.output
        assert (await login_body(api, viewer))["user"]["roles"] == ["admin", "viewer"]


async def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    empty = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"}
    for args in (["auth", "list-keys"], ["auth", "rotate-key"]):
        result = await _acli(args, empty)
        assert result.exit_code == 1, result.output
        assert "not migrated: run `onair migrate auth` first" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    bad_alg = await _acli(["auth", "rotate-key", "--alg", "RS256"], empty)
    assert bad_alg.exit_code == 1 and "EdDSA or ES256" in bad_alg.stderr
    bad_url = await _acli(["auth", "list-keys"], {"DATABASE_URL": "mysql://nope"})
    assert bad_url.exit_code == 1 and "SQLite or PostgreSQL" in bad_url.stderr
    bad_name = await _acli(["auth", "create-admin", "Not Valid", "--password-stdin"], empty, stdin="x\n")
    assert bad_name.exit_code == 1 and "3-32 characters" in bad_name.stderr


async def test_rotate_key_refuses_keys_it_could_not_read_back(sqlite_stack: Stack) -> None:
    """Keys stored encrypted: a rotation without (or with another) secret is refused."""
    engine = create_engine(sqlite_stack.database_url)
    try:
        await migrate(engine, "onair_services.auth:migrations")
    finally:
        await engine.dispose()
    secret = {"ONAIR_AUTH_KEY_ENCRYPTION_SECRET": "first-secret-of-the-vault"}
    env = {"DATABASE_URL": sqlite_stack.database_url}
    first = _json(await _acli(["auth", "rotate-key", "--json"], {**env, **secret}))
    assert first["lead_s"] == 0 and first["new"]["state"] == "signing"  # an empty table: signs at once
    without = await _acli(["auth", "rotate-key"], env)
    assert without.exit_code == 1 and "ONAIR_AUTH_KEY_ENCRYPTION_SECRET" in without.stderr
    other = await _acli(
        ["auth", "rotate-key"], {**env, "ONAIR_AUTH_KEY_ENCRYPTION_SECRET": "another-secret-of-the-vault"}
    )
    assert other.exit_code == 1 and "does not decrypt" in other.stderr
    keys = _json(await _acli(["auth", "list-keys", "--json"], env))
    assert len(keys) == 1 and keys[0]["encrypted"] is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ONAIR_AUTH_ACCESS_TOKEN_TTL_S", "0"),
        ("ONAIR_AUTH_ACCESS_TOKEN_TTL_S", "1000"),
        ("ONAIR_AUTH_KEY_ENCRYPTION_SECRET", "short"),
        ("ONAIR_AUTH_LOGIN_LIMIT_PER_IP", "lots"),
    ],
)
def test_invalid_settings_are_one_line(name: str, value: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", name: value}
    result = _cli(["auth", "rotate-key"], env)
    assert result.exit_code == 1 and name in result.stderr and len(result.stderr.strip().splitlines()) == 1
    if "SECRET" in name:
        assert value not in result.stderr
