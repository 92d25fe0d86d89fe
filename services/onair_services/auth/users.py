"""Users: create (sign-up, the admin CLI), look up, grant roles; the ``auth.user.created`` event.

Roles are capabilities: every user holds ``viewer``; a streamer also holds ``streamer``; ``admin``
is never self-assigned (``onair auth create-admin``). Ids are opaque and random (16 characters of
base64url), never derived from the username.

The event is logged after the commit, and the user row remembers (``event_logged_at``) that the
broker acknowledged it. A crash or a broker outage between the two leaves it NULL; the re-logger
(:func:`relog_pass`, at start and every ``relog_interval_s``) logs those users again, so every
consumer (e.g. the wallet's ``wallet.users`` projection, idempotent by user id) gets each user.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.logstream import Position
from onair_services.auth.models import now_utc, users, utc
from onair_services.auth.sessions import User, new_id

ROLES = ("viewer", "streamer", "admin")
USERNAME_PATTERN = r"^[a-z0-9_]{3,32}$"
EVENT_CATEGORY = "auth.user.created"

SIGNUPS = Counter("onair_auth_signups_total", "Users created", ["role"])


class UsernameTaken(Exception):
    """The username is already in use."""


def roles_for(role: str) -> tuple[str, ...]:
    """The roles a new user with the chosen ``role`` holds (viewer always)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    return tuple(sorted({"viewer", role}))


class UserStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def create(self, username: str, password_hash: str, roles: Iterable[str]) -> User:
        """Insert a user; :class:`UsernameTaken` when the name exists (also under a race)."""
        user = User(id=new_id(), username=username, roles=tuple(sorted(set(roles))), created_at=now_utc())
        try:
            async with self.sessions() as session, session.begin():
                await session.execute(
                    sa.insert(users).values(
                        id=user.id,
                        username=user.username,
                        password_hash=password_hash,
                        roles=list(user.roles),
                        created_at=user.created_at,
                        event_logged_at=None,
                    )
                )
        except IntegrityError:
            raise UsernameTaken(username) from None
        SIGNUPS.labels("admin" if "admin" in user.roles else user.roles[-1]).inc()
        return user

    async def by_username(self, username: str) -> tuple[User, str] | None:
        """The user and their password hash, or None."""
        async with self.sessions() as session:
            row = (await session.execute(sa.select(users).where(users.c.username == username))).first()
        return None if row is None else (User.from_row(row), row.password_hash)

    async def by_id(self, user_id: str) -> User | None:
        async with self.sessions() as session:
            row = (await session.execute(sa.select(users).where(users.c.id == user_id))).first()
        return None if row is None else User.from_row(row)

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                sa.update(users).where(users.c.id == user_id).values(password_hash=password_hash)
            )

    async def grant(self, username: str, role: str) -> User | None:
        """Add ``role`` to a user's roles (None: no such user)."""
        async with self.sessions() as session, session.begin():
            row = (
                await session.execute(sa.select(users).where(users.c.username == username).with_for_update())
            ).first()
            if row is None:
                return None
            roles = sorted({*row.roles, role})
            await session.execute(sa.update(users).where(users.c.id == row.id).values(roles=roles))
        return User(row.id, row.username, tuple(roles), utc(row.created_at))

    async def mark_logged(self, user_id: str) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                sa.update(users).where(users.c.id == user_id).values(event_logged_at=now_utc())
            )

    async def unlogged(self, grace_s: float, limit: int = 200) -> list[User]:
        cutoff = now_utc() - timedelta(seconds=grace_s)
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    sa.select(users)
                    .where(users.c.event_logged_at.is_(None), users.c.created_at <= cutoff)
                    .order_by(users.c.created_at)
                    .limit(limit)
                )
            ).all()
        return [User.from_row(r) for r in rows]


def event_fields(user: User) -> dict[str, Any]:
    """The data fields of ``auth.user.created`` (docs/contracts.md)."""
    return {"user_id": user.id, "username": user.username, "roles": list(user.roles)}


async def log_created(svc: Any, store: UserStore, user: User, timeout_s: float) -> Position | None:
    """Log ``auth.user.created``; mark the user once the broker has it. The position, or None."""
    position: Position | None = await svc.log_event(
        "user created", category=EVENT_CATEGORY, entity=user.id, timeout_s=timeout_s, **event_fields(user)
    )
    if position is not None:
        await store.mark_logged(user.id)
    return position


async def relog_pass(svc: Any, store: UserStore, grace_s: float, timeout_s: float) -> int:
    """Log again every user whose event was not acknowledged; returns how many are now logged."""
    done = 0
    pending = await store.unlogged(grace_s)
    for user in pending:
        if await log_created(svc, store, user, timeout_s) is not None:
            done += 1
    if pending:
        svc.log.info("re-logged users", found=len(pending), acknowledged=done)
    return done
