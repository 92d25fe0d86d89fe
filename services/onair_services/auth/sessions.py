"""Login sessions: access tokens, and refresh tokens that rotate inside a family.

A login starts a **family** (the session; its id is the access token's ``sid`` claim) with one
refresh token and one access token. ``refresh`` uses a refresh token up — atomically, a
conditional ``UPDATE ... WHERE used_at IS NULL`` — and issues the next pair in the same family.
Presenting a refresh token that was **already used** means two parties hold it (the client and a
thief, or a client that lost a race): the whole family is revoked, every access token it issued
that may still be live goes on the revocation list, and the answer is 401.

* refresh tokens: 256 random bits (``secrets.token_urlsafe(32)``), stored as their SHA-256, single
  use, valid ``refresh_token_ttl_s`` from issue and never past the family's ``expires_at``;
* access tokens: EdDSA (or ES256) JWTs from the key ring, ``exp - iat = access_token_ttl_s``
  (<= 900), claims ``iss aud sub name roles iat exp jti sid`` (docs/contracts.md);
* revocation of a family's access tokens: each is written to the :class:`onair.auth.RevocationList`
  until its ``exp`` and marked ``access_revoked_at``; :meth:`SessionStore.sweep` (run every few
  seconds) finishes any that could not be written (Valkey down, a crash in between).

A refresh locks its family row (``FOR UPDATE`` on PostgreSQL; SQLite serialises writers), so a
revocation and a refresh of the same family never interleave: either the refresh sees the
revocation, or the revocation sees (and revokes) the refresh's new access token.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.auth import RevocationList
from onair.logging import get_logger
from onair_services.auth.keyring import KeyRing
from onair_services.auth.models import now_utc, refresh_families, refresh_tokens, users, utc
from onair_services.auth.settings import AuthSettings

log = get_logger("onair.auth.sessions")

RefusalReason = Literal["invalid", "expired", "revoked", "reused"]

REFRESHES = Counter("onair_auth_refresh_total", "Refresh-token uses by outcome", ["result"])
FAMILY_REVOCATIONS = Counter(
    "onair_auth_session_revocations_total", "Login sessions (refresh-token families) revoked", ["reason"]
)
ACCESS_REVOKED = Counter(
    "onair_auth_access_tokens_revoked_total", "Access tokens put on the revocation list with their session"
)


class RefreshRefused(Exception):
    """The refresh token cannot be used; ``reason`` says why (all are 401 to the client)."""

    def __init__(self, reason: RefusalReason) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class User:
    id: str
    username: str
    roles: tuple[str, ...]
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> User:
        return cls(row.id, row.username, tuple(sorted(row.roles)), utc(row.created_at))


@dataclass(frozen=True)
class Issued:
    """What a login or a refresh hands out (the refresh token in the clear, this once)."""

    user: User
    session_id: str
    access_token: str
    access_expires_in: int
    refresh_token: str
    refresh_expires_at: datetime


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_id(nbytes: int = 12) -> str:
    """An opaque random id: ``nbytes`` random bytes, base64url (16 characters for 12 bytes)."""
    return secrets.token_urlsafe(nbytes)


class SessionStore:
    """Families and tokens in the auth database, access tokens signed with the key ring."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        keyring: KeyRing,
        revocations: RevocationList,
        settings: AuthSettings,
    ) -> None:
        self.sessions = sessions
        self.keyring = keyring
        self.revocations = revocations
        self.settings = settings

    # -- issuing -----------------------------------------------------------------------------------
    def _access_token(self, user: User, session_id: str, now: datetime) -> tuple[str, str, datetime]:
        iat = int(now.timestamp())
        ttl = self.settings.access_token_ttl_s
        jti = secrets.token_urlsafe(16)
        claims = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": user.id,
            "name": user.username,
            "roles": list(user.roles),
            "iat": iat,
            "exp": iat + ttl,
            "jti": jti,
            "sid": session_id,
        }
        token = self.keyring.signer(now).sign(claims)
        return token, jti, datetime.fromtimestamp(iat + ttl, now.tzinfo)

    async def _issue(
        self, session: AsyncSession, user: User, family_id: str, family_expires: datetime, now: datetime
    ) -> Issued:
        access, jti, access_exp = self._access_token(user, family_id, now)
        refresh = secrets.token_urlsafe(32)
        refresh_exp = min(now + timedelta(seconds=self.settings.refresh_token_ttl_s), family_expires)
        await session.execute(
            sa.insert(refresh_tokens).values(
                token_hash=hash_token(refresh),
                family_id=family_id,
                created_at=now,
                expires_at=refresh_exp,
                used_at=None,
                access_jti=jti,
                access_expires_at=access_exp,
                access_revoked_at=None,
            )
        )
        return Issued(
            user=user,
            session_id=family_id,
            access_token=access,
            access_expires_in=self.settings.access_token_ttl_s,
            refresh_token=refresh,
            refresh_expires_at=refresh_exp,
        )

    async def start(self, user: User) -> Issued:
        """A new session for ``user`` (after a successful login)."""
        now = now_utc()
        family_id = new_id()
        expires = now + timedelta(seconds=self.settings.session_max_age_s)
        async with self.sessions() as session, session.begin():
            await session.execute(
                sa.insert(refresh_families).values(
                    id=family_id, user_id=user.id, created_at=now, expires_at=expires
                )
            )
            return await self._issue(session, user, family_id, expires, now)

    # -- refreshing --------------------------------------------------------------------------------
    async def refresh(self, token: str) -> Issued:
        """Use ``token`` up and issue the next pair; :class:`RefreshRefused` otherwise (a reused
        token revokes its family first)."""
        digest = hash_token(token)
        now = now_utc()
        async with self.sessions() as session, session.begin():
            taken = await session.execute(
                sa.update(refresh_tokens)
                .where(
                    refresh_tokens.c.token_hash == digest,
                    refresh_tokens.c.used_at.is_(None),
                    refresh_tokens.c.expires_at > now,
                )
                .values(used_at=now)
            )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                family = (
                    await session.execute(
                        sa.select(refresh_families)
                        .join(refresh_tokens, refresh_tokens.c.family_id == refresh_families.c.id)
                        .where(refresh_tokens.c.token_hash == digest)
                        .with_for_update(of=refresh_families)
                    )
                ).one()
                if family.revoked_at is not None or utc(family.expires_at) <= now:
                    reason: RefusalReason = "revoked" if family.revoked_at is not None else "expired"
                    REFRESHES.labels(reason).inc()
                    raise RefreshRefused(reason)  # rolls back: the token is left as it was
                row = (await session.execute(sa.select(users).where(users.c.id == family.user_id))).one()
                issued = await self._issue(
                    session, User.from_row(row), family.id, utc(family.expires_at), now
                )
                REFRESHES.labels("ok").inc()
                return issued
            found = (
                await session.execute(
                    sa.select(refresh_tokens.c.family_id, refresh_tokens.c.used_at).where(
                        refresh_tokens.c.token_hash == digest
                    )
                )
            ).first()
        if found is None:
            REFRESHES.labels("invalid").inc()
            raise RefreshRefused("invalid")
        if found.used_at is None:
            REFRESHES.labels("expired").inc()
            raise RefreshRefused("expired")
        REFRESHES.labels("reused").inc()
        if await self.revoke_family(found.family_id, "reuse"):
            log.warning("auth.refresh.reuse_detected", session_id=found.family_id)
        raise RefreshRefused("reused")

    # -- revoking ----------------------------------------------------------------------------------
    async def family_of(self, token: str) -> str | None:
        """The session id of a refresh token (used or not), or None."""
        async with self.sessions() as session:
            return (
                await session.execute(
                    sa.select(refresh_tokens.c.family_id).where(
                        refresh_tokens.c.token_hash == hash_token(token)
                    )
                )
            ).scalar_one_or_none()

    async def owner_of(self, session_id: str) -> str | None:
        async with self.sessions() as session:
            return (
                await session.execute(
                    sa.select(refresh_families.c.user_id).where(refresh_families.c.id == session_id)
                )
            ).scalar_one_or_none()

    async def revoke_family(self, family_id: str, reason: str) -> bool:
        """Revoke a session and its live access tokens. True if this call revoked it (False: it
        was already revoked or does not exist; its access tokens are still made sure of).
        Raises :class:`onair.auth.RevocationUnavailable` when Valkey cannot store them (the session
        stays revoked in the database; :meth:`sweep` finishes the access tokens later)."""
        now = now_utc()
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                sa.update(refresh_families)
                .where(refresh_families.c.id == family_id, refresh_families.c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=reason[:32])
            )
        changed = bool(result.rowcount)  # type: ignore[attr-defined]
        if changed:
            FAMILY_REVOCATIONS.labels(reason).inc()
            log.info("auth.session.revoked", session_id=family_id, reason=reason)
        await self._revoke_access_tokens([family_id], reason)
        return changed

    async def _revoke_access_tokens(self, family_ids: Sequence[str], reason: str) -> int:
        now = now_utc()
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    sa.select(
                        refresh_tokens.c.token_hash,
                        refresh_tokens.c.access_jti,
                        refresh_tokens.c.access_expires_at,
                    ).where(
                        refresh_tokens.c.family_id.in_(family_ids),
                        refresh_tokens.c.access_revoked_at.is_(None),
                        refresh_tokens.c.access_expires_at > now - timedelta(seconds=self.settings.leeway_s),
                    )
                )
            ).all()
        done: list[str] = []
        try:
            for row in rows:
                await self.revocations.revoke(
                    row.access_jti, utc(row.access_expires_at).timestamp(), reason=f"session {reason}"
                )
                done.append(row.token_hash)
        finally:
            if done:
                async with self.sessions() as session, session.begin():
                    await session.execute(
                        sa.update(refresh_tokens)
                        .where(refresh_tokens.c.token_hash.in_(done))
                        .values(access_revoked_at=now_utc())
                    )
                ACCESS_REVOKED.inc(len(done))
        return len(done)

    async def sweep(self, limit: int = 500) -> int:
        """Put the live access tokens of revoked sessions that are not on the revocation list yet
        on it (after a Valkey outage or a crash between the two writes); returns how many."""
        now = now_utc()
        async with self.sessions() as session:
            families = (
                (
                    await session.execute(
                        sa.select(refresh_tokens.c.family_id)
                        .distinct()
                        .join(refresh_families, refresh_families.c.id == refresh_tokens.c.family_id)
                        .where(
                            refresh_families.c.revoked_at.is_not(None),
                            refresh_tokens.c.access_revoked_at.is_(None),
                            refresh_tokens.c.access_expires_at > now,
                        )
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
        if not families:
            return 0
        return await self._revoke_access_tokens(list(families), "sweep")

    async def prune(self, older_than_s: float = 24 * 3600) -> int:
        """Delete sessions that ended (expired or revoked) more than ``older_than_s`` ago, with their
        tokens: nothing in them can be used or needs revoking any more. Returns how many."""
        cutoff = now_utc() - timedelta(seconds=older_than_s)
        async with self.sessions() as session, session.begin():
            ended = sa.or_(refresh_families.c.expires_at < cutoff, refresh_families.c.revoked_at < cutoff)
            ids = list(
                (await session.execute(sa.select(refresh_families.c.id).where(ended).limit(500))).scalars()
            )
            if ids:
                await session.execute(sa.delete(refresh_tokens).where(refresh_tokens.c.family_id.in_(ids)))
                await session.execute(sa.delete(refresh_families).where(refresh_families.c.id.in_(ids)))
        return len(ids)
