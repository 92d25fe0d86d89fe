"""The auth database: users, signing keys, refresh-token families (login sessions) and their tokens.

Timestamps are UTC (``DateTime(timezone=True)``; SQLite hands them back naive, :func:`utc` fixes
that). Nothing here holds a secret in the clear: passwords are argon2id hashes, refresh tokens are
stored as the SHA-256 of the token, private keys are PKCS#8 PEM, encrypted when a secret is set.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("username", sa.String(32), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Set once the broker acknowledged the auth.user.created event (NULL: to be logged again).
    sa.Column("event_logged_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("username", name="uq_users_username"),
)

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.String(128), primary_key=True),
    sa.Column("alg", sa.String(16), nullable=False),
    # PKCS#8 PEM; "ENCRYPTED PRIVATE KEY" when the encryption secret was set at creation.
    sa.Column("private_pem", sa.Text, nullable=False),
    sa.Column("encrypted", sa.Boolean, nullable=False),
    sa.Column("public_jwk", sa.JSON, nullable=False),
    # Published from created_at; signs in [signs_from, signs_until); published until published_until.
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("signs_from", sa.DateTime(timezone=True), nullable=False),
    sa.Column("signs_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("published_until", sa.DateTime(timezone=True), nullable=True),
)

refresh_families = sa.Table(
    "refresh_families",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # The session ends here at the latest, however often it is refreshed.
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_reason", sa.String(32), nullable=True),
    sa.Index("ix_refresh_families_user", "user_id"),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    # SHA-256 (hex) of the opaque token: a 256-bit random token needs no slow hash.
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column(
        "family_id", sa.String(32), sa.ForeignKey("refresh_families.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    # The access token issued with this refresh token: revoked with the family.
    sa.Column("access_jti", sa.String(64), nullable=False),
    sa.Column("access_expires_at", sa.DateTime(timezone=True), nullable=False),
    # Set once the access token's jti is on the revocation list (after the family was revoked).
    sa.Column("access_revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_refresh_tokens_family", "family_id"),
)


def now_utc() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (SQLite returns naive ones)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)
