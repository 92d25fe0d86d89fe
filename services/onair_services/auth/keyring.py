"""Signing keys: stored in the auth database, rotated without a restart, published as a JWKS.

A key row has a life in four states (docs/auth-service.md, "Key rotation"):

``pending``  published (in the JWKS) but not signing yet: ``created_at <= now < signs_from``;
``signing``  ``signs_from <= now < signs_until`` (or no ``signs_until``);
``retiring`` stopped signing, still published until ``published_until`` (the longest lifetime
             of a token it signed, plus leeway and a margin);
``retired``  out of the JWKS; its row (and private key) is deleted at the next rotation.

* :class:`KeyStore` — the table: ``ensure_signing_key`` (the first start creates a key; two
  processes starting at once create one, under a lock), ``rotate`` (a new key published
  ``lead_s`` before it signs; every other key stops signing when it starts), ``records``.
* :class:`KeyRing` — one process's view, re-read every few seconds by :meth:`KeyRing.refresh`:
  the key to sign with now and the public keys to publish now. Private keys are decrypted once
  per ``kid`` and never logged or returned.

Locking: PostgreSQL takes a transaction-level advisory lock; SQLite takes its write lock by
starting the transaction with a (no-op) write, so a second writer waits (busy timeout) and then
sees the first one's key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.auth import SigningKey, UnsupportedKey, jwks_document
from onair.logging import get_logger
from onair_services.auth.models import now_utc, signing_keys, utc, utc_or_none

log = get_logger("onair.auth.keys")

KeyState = Literal["pending", "signing", "retiring", "retired"]
STATES: tuple[KeyState, ...] = ("pending", "signing", "retiring", "retired")

KEYS = Gauge(
    "onair_auth_signing_keys", "Signing keys in the table by state (as this process saw them)", ["state"]
)

#: pg_advisory_xact_lock key of the signing-keys table ("onair.auth.keys" as a number).
_PG_LOCK = 0x6F6E6169_72_6B6579


class KeyringError(RuntimeError):
    """Signing keys cannot be used (encrypted without the secret, wrong secret, corrupt row)."""


class NoSigningKey(ConnectionError):
    """No key may sign right now (answered 503: retry)."""


@dataclass(frozen=True)
class KeyRecord:
    """A key's public facts (never the private key)."""

    kid: str
    alg: str
    encrypted: bool
    public_jwk: dict[str, Any]
    created_at: datetime
    signs_from: datetime
    signs_until: datetime | None
    published_until: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> KeyRecord:
        return cls(
            kid=row.kid,
            alg=row.alg,
            encrypted=bool(row.encrypted),
            public_jwk=dict(row.public_jwk),
            created_at=utc(row.created_at),
            signs_from=utc(row.signs_from),
            signs_until=utc_or_none(row.signs_until),
            published_until=utc_or_none(row.published_until),
        )

    def signs_at(self, now: datetime) -> bool:
        return self.signs_from <= now and (self.signs_until is None or now < self.signs_until)

    def published_at(self, now: datetime) -> bool:
        return self.created_at <= now and (self.published_until is None or now < self.published_until)

    def state(self, now: datetime) -> KeyState:
        if not self.published_at(now):
            return "retired"
        if self.signs_at(now):
            return "signing"
        if now < self.signs_from:
            return "pending"
        return "retiring"


def load_private(pem: str, encrypted: bool, password: bytes | None, kid: str) -> SigningKey:
    """The private key of a row; :class:`KeyringError` (naming the kid, never the key) if unusable."""
    if encrypted and password is None:
        raise KeyringError(f"signing key {kid} is encrypted: set ONAIR_AUTH_KEY_ENCRYPTION_SECRET")
    try:
        key = SigningKey.from_pem(pem, password if encrypted else None)
    except UnsupportedKey:
        problem = "the encryption secret does not decrypt it" if encrypted else "its PEM is not usable"
        raise KeyringError(f"signing key {kid}: {problem}") from None
    if key.kid != kid:
        raise KeyringError(f"signing key {kid}: the stored key has thumbprint {key.kid}")
    return key


async def _lock(session: AsyncSession) -> None:
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        await session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
    else:  # SQLite: the first write of a transaction takes the database's write lock (or waits)
        await session.execute(sa.text("UPDATE signing_keys SET kid = kid WHERE 1 = 0"))


class KeyStore:
    """The ``signing_keys`` table (the service and ``onair auth`` share it)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], password: bytes | None = None) -> None:
        self.sessions = sessions
        self.password = password

    async def records(self) -> list[KeyRecord]:
        async with self.sessions() as session:
            rows = (await session.execute(sa.select(signing_keys).order_by(signing_keys.c.signs_from))).all()
        return [KeyRecord.from_row(r) for r in rows]

    async def rows(self) -> Sequence[Any]:
        async with self.sessions() as session:
            return (await session.execute(sa.select(signing_keys))).all()

    def _new_row(self, key: SigningKey, now: datetime, signs_from: datetime) -> dict[str, Any]:
        return {
            "kid": key.kid,
            "alg": key.alg,
            "private_pem": key.private_pem(self.password).decode("ascii"),
            "encrypted": self.password is not None,
            "public_jwk": dict(key.public_jwk),
            "created_at": now,
            "signs_from": signs_from,
            "signs_until": None,
            "published_until": None,
        }

    async def ensure_signing_key(self, alg: str = "EdDSA") -> KeyRecord | None:
        """Create a key that signs at once when no key signs now or later; the new record, or None
        when one exists. Safe with several processes starting at once (one key is made)."""
        async with self.sessions() as session, session.begin():
            await _lock(session)
            now = now_utc()
            live = (
                await session.execute(
                    sa.select(signing_keys.c.kid).where(
                        sa.or_(signing_keys.c.signs_until.is_(None), signing_keys.c.signs_until > now)
                    )
                )
            ).first()
            if live is not None:
                return None
            key = SigningKey.generate(alg)  # type: ignore[arg-type]
            row = self._new_row(key, now, now)
            await session.execute(sa.insert(signing_keys).values(**row))
        log.info(
            "auth.key.created", kid=key.kid, alg=key.alg, reason="no signing key", encrypted=row["encrypted"]
        )
        return KeyRecord.from_row(_Row(row))

    async def check_password(self) -> None:
        """Fail (:class:`KeyringError`) unless every live key can be decrypted with this store's
        secret: a rotation must not mix keys that the service cannot read."""
        now = now_utc()
        for row in await self.rows():
            record = KeyRecord.from_row(row)
            if record.published_at(now):
                load_private(row.private_pem, record.encrypted, self.password, record.kid)

    async def rotate(
        self, *, alg: str, lead_s: float, retire_after_s: float
    ) -> tuple[KeyRecord, list[KeyRecord], list[str]]:
        """Add a key that is published now and signs ``lead_s`` from now; every key still signing
        then stops at that moment and stays published ``retire_after_s`` longer. Retired keys are
        deleted. Returns (the new key, the keys it replaces, the deleted kids); the caller reports
        it (the running services log ``auth.keys.changed`` when they pick it up)."""
        key = SigningKey.generate(alg)  # type: ignore[arg-type]
        async with self.sessions() as session, session.begin():
            await _lock(session)
            now = now_utc()
            rows = [KeyRecord.from_row(r) for r in (await session.execute(sa.select(signing_keys))).all()]
            live = any(r.signs_until is None or r.signs_until > now for r in rows)
            # Nothing signs now or later (an empty table): no verifier can hold an older JWKS
            # that lacks the key and still see tokens, so the new key signs at once.
            starts = now + timedelta(seconds=lead_s) if live else now
            replaced: list[KeyRecord] = []
            for rec in rows:
                if rec.signs_until is None or rec.signs_until > starts:
                    until = starts
                    published = until + timedelta(seconds=retire_after_s)
                    await session.execute(
                        sa.update(signing_keys)
                        .where(signing_keys.c.kid == rec.kid)
                        .values(signs_until=until, published_until=published)
                    )
                    replaced.append(rec)
            retired = [r.kid for r in rows if r.state(now) == "retired"]
            if retired:
                await session.execute(sa.delete(signing_keys).where(signing_keys.c.kid.in_(retired)))
            row = self._new_row(key, now, starts)
            await session.execute(sa.insert(signing_keys).values(**row))
        new = KeyRecord.from_row(_Row(row))
        return new, replaced, retired


class _Row:
    """A dict seen as a result row (for :meth:`KeyRecord.from_row`)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


class KeyRing:
    """One process's signing keys, re-read from the table by :meth:`refresh` (see module docstring)."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._records: list[KeyRecord] = []
        self._private: dict[str, SigningKey] = {}
        self._broken: dict[str, str] = {}
        self.loaded = False

    @property
    def records(self) -> list[KeyRecord]:
        return list(self._records)

    async def refresh(self) -> None:
        """Re-read the table; decrypt keys not seen before (retired ones never). A key that cannot
        be decrypted fails the first load (start-up) and is logged once and skipped later (the
        others keep working)."""
        rows = await self.store.rows()
        records = sorted((KeyRecord.from_row(r) for r in rows), key=lambda r: (r.signs_from, r.kid))
        pems = {r.kid: (r.private_pem, bool(r.encrypted)) for r in rows}
        now = now_utc()
        for rec in records:
            if rec.kid in self._private or rec.kid in self._broken or rec.state(now) == "retired":
                continue
            pem, encrypted = pems[rec.kid]
            try:
                self._private[rec.kid] = load_private(pem, encrypted, self.store.password, rec.kid)
            except KeyringError as exc:
                self._broken[rec.kid] = str(exc)
                log.error("auth.key.unusable", kid=rec.kid, problem=str(exc))
                if not self.loaded:
                    raise
        known = {r.kid for r in records}
        self._private = {k: v for k, v in self._private.items() if k in known}
        added = known - {r.kid for r in self._records}
        self._records = records
        if added and self.loaded:
            log.info("auth.keys.changed", added=sorted(added), kids=sorted(known))
        self.loaded = True
        for state in STATES:
            KEYS.labels(state).set(sum(1 for r in records if r.state(now) == state))

    def signer(self, now: datetime | None = None) -> SigningKey:
        """The key to sign with now: of the keys in their signing window, the one that started
        last. :class:`NoSigningKey` when there is none."""
        now = now or now_utc()
        for rec in reversed(self._records):
            if rec.signs_at(now) and rec.kid in self._private:
                return self._private[rec.kid]
        raise NoSigningKey("no signing key is usable right now")

    def published(self, now: datetime | None = None) -> list[KeyRecord]:
        now = now or now_utc()
        return [r for r in self._records if r.published_at(now)]

    def jwks(self, now: datetime | None = None) -> dict[str, Any]:
        """``{"keys": [...]}``: every published key's public JWK, newest first."""
        published = self.published(now)
        published.sort(key=lambda r: r.signs_from, reverse=True)
        return jwks_document(r.public_jwk for r in published)

    def kids(self, states: Iterable[KeyState], now: datetime | None = None) -> list[str]:
        now = now or now_utc()
        wanted = set(states)
        return [r.kid for r in self._records if r.state(now) in wanted]
