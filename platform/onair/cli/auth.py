"""``onair auth``: the auth service's signing keys and its admins, straight in its database.

* ``onair auth rotate-key [--alg EdDSA|ES256] [--lead-s S]`` adds a key that is published at once
  and signs ``lead`` seconds later (default: the verifiers' refetch interval + two polls + 1 s);
  every key signing until then stops at that moment and leaves the JWKS after the longest token
  lifetime (+ leeway + margin). Running auth processes pick it up from the table within
  ``ONAIR_AUTH_KEY_POLL_INTERVAL_S``, no restart.
* ``onair auth list-keys [--json]``: every key with its state (pending, signing, retiring, retired).
* ``onair auth create-admin USERNAME [--password-stdin] [--promote]``: the only way to an admin
  (sign-up never grants it). The running service logs its ``auth.user.created`` event (re-logger).

The database is ``DATABASE_URL`` (the auth service's own); the private keys are encrypted with
``ONAIR_AUTH_KEY_ENCRYPTION_SECRET`` when it is set. The service's code is imported lazily, so the
rest of the CLI does not depend on it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from onair.cli.common import console, fail, out

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

app = typer.Typer(no_args_is_help=True)

T = TypeVar("T")


def _database_url() -> str:
    from onair.service.settings import RuntimeSettings

    return RuntimeSettings().database_url


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<DATABASE_URL>"


def _run(work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    """Run ``work(sessions)`` on the auth database; one-line errors for the usual problems."""
    from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

    from onair.db import create_engine, session_factory

    url = _database_url()
    _quiet_logs()

    async def main() -> T:
        engine = create_engine(url)
        try:
            return await work(session_factory(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (OperationalError, ProgrammingError) as exc:
        text = str(exc.orig if getattr(exc, "orig", None) is not None else exc).lower()
        if "no such table" in text or "does not exist" in text:
            fail(f"the auth database at {_shown(url)} is not migrated: run `onair migrate auth` first")
        fail(f"auth database {_shown(url)}: {str(exc).splitlines()[0]}")
    except (DBAPIError, OSError) as exc:
        fail(f"cannot reach the auth database at {_shown(url)}: {str(exc).splitlines()[0]}")
    except ValueError as exc:  # a DATABASE_URL that is not SQLite or PostgreSQL
        fail(str(exc))


def _quiet_logs() -> None:
    """Log lines (warnings and worse) go to stderr, so stdout holds only the command's output."""
    import structlog

    from onair.logging import configure_logging

    if not structlog.is_configured():
        configure_logging("onair-cli", "WARNING", stream=sys.stderr)


def _settings() -> Any:
    from pydantic import ValidationError

    from onair_services.auth.settings import AuthSettings

    try:
        return AuthSettings()
    except ValidationError as exc:
        problems = "; ".join(f"ONAIR_AUTH_{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors())
        fail(f"invalid auth settings: {problems}")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


def _record(rec: Any, now: datetime) -> dict[str, Any]:
    return {
        "kid": rec.kid,
        "alg": rec.alg,
        "state": rec.state(now),
        "encrypted": rec.encrypted,
        "created_at": _iso(rec.created_at),
        "signs_from": _iso(rec.signs_from),
        "signs_until": _iso(rec.signs_until),
        "published_until": _iso(rec.published_until),
    }


@app.command("rotate-key")
def rotate_key(
    alg: str = typer.Option(
        None, "--alg", help="EdDSA (Ed25519) or ES256 (P-256); default ONAIR_AUTH_KEY_ALG."
    ),
    lead_s: float = typer.Option(
        None, "--lead-s", min=0, help="Seconds between publishing the new key and signing with it."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Add a new signing key: published now, signing after the lead; the old one retires."""
    from onair_services.auth.keyring import KeyringError, KeyStore

    settings = _settings()
    algorithm = alg or settings.key_alg
    if algorithm not in ("EdDSA", "ES256"):
        fail(f"--alg must be EdDSA or ES256, not {algorithm!r}")
    lead = settings.publish_lead_s if lead_s is None else lead_s

    async def work(sessions: async_sessionmaker[AsyncSession]) -> Any:
        store = KeyStore(sessions, settings.encryption_password())
        try:
            await store.check_password()
        except KeyringError as exc:
            fail(f"{exc} (the new key would not be readable next to it)")
        return await store.rotate(alg=algorithm, lead_s=lead, retire_after_s=settings.retire_after_s)

    new, replaced, deleted = _run(work)
    now = datetime.now(UTC)
    result = {
        "new": _record(new, now),
        "replaced": [_record(r, now) for r in replaced],
        "deleted": deleted,
        "lead_s": (new.signs_from - new.created_at).total_seconds(),
    }
    if as_json:
        out.print_json(json.dumps(result))
        return
    out.print(f"new key {new.kid} ({new.alg}): published now, signs from {_iso(new.signs_from)}")
    for rec in replaced:
        out.print(f"  {rec.kid} stops signing then and leaves the JWKS at {_iso(rec.published_until)}")
    if deleted:
        out.print(f"  deleted retired keys: {', '.join(deleted)}")


@app.command("list-keys")
def list_keys(as_json: bool = typer.Option(False, "--json", help="One JSON array.")) -> None:
    """Every signing key: state, algorithm, when it signs and until when it is published."""
    from onair_services.auth.keyring import KeyStore

    async def work(sessions: async_sessionmaker[AsyncSession]) -> Any:
        return await KeyStore(sessions).records()

    records = _run(work)
    now = datetime.now(UTC)
    rows = [_record(r, now) for r in records]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    if not rows:
        out.print("no signing keys yet (the auth service creates one at its first start)")
        return
    from rich.table import Table

    table = Table("kid", "alg", "state", "signs from", "signs until", "published until", "encrypted")
    for row in rows:
        table.add_row(
            row["kid"],
            row["alg"],
            row["state"],
            row["signs_from"] or "",
            row["signs_until"] or "",
            row["published_until"] or "",
            "yes" if row["encrypted"] else "no",
        )
    out.print(table)


@app.command("create-admin")
def create_admin(
    username: str = typer.Argument(..., help="3-32 characters: a-z, 0-9 and _."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of standard input."
    ),
    promote: bool = typer.Option(
        False, "--promote", help="If the user exists, grant it admin (its password is left alone)."
    ),
) -> None:
    """Create an admin account (sign-up never makes one), or promote an existing user."""
    import re

    from onair_services.auth.passwords import PasswordHasher, password_problem
    from onair_services.auth.users import USERNAME_PATTERN, UsernameTaken, UserStore

    if not re.fullmatch(USERNAME_PATTERN, username):
        fail(f"username {username!r} must be 3-32 characters of a-z, 0-9 and _")
    settings = _settings()

    async def promote_existing(sessions: async_sessionmaker[AsyncSession]) -> Any:
        return await UserStore(sessions).grant(username, "admin")

    if promote:
        user = _run(promote_existing)
        if user is not None:
            out.print(f"{user.username} ({user.id}) now has roles: {', '.join(user.roles)}")
            return
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password, username)
    if problem is not None:
        fail(f"the password {problem}")

    async def create(sessions: async_sessionmaker[AsyncSession]) -> Any:
        hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            concurrency=1,
        )
        try:
            return await UserStore(sessions).create(
                username, await hasher.hash(password), ("admin", "viewer")
            )
        except UsernameTaken:
            fail(f"user {username!r} exists; use --promote to grant it admin")

    user = _run(create)
    out.print(f"created admin {user.username} ({user.id})")
    console.print("the running auth service logs its auth.user.created event (re-logger)", style="dim")
