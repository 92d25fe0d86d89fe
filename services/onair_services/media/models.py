"""media's tables: the publish-key projection, each channel's stream state, and sessions.

Times used for leases are epoch milliseconds (plain integers compare the same on SQLite and
PostgreSQL); every media instance's clock must agree to well within ``lease_s``.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, MetaData, String, Table

metadata = MetaData()

# Projection media.publish_keys of media.broad_info.publish_key (never liveapi's tables).
publish_keys = Table(
    "publish_keys",
    metadata,
    Column("channel", String(32), primary_key=True),
    Column("owner_id", String(64), nullable=False),
    Column("key_sha256", String(64), nullable=False),
    Column("seq", BigInteger, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# One row per channel that ever went live: the status counter (the seq of status events, bumped in
# the same transaction as the session change) and what of it is known to be on the log.
streams = Table(
    "streams",
    metadata,
    Column("channel", String(32), primary_key=True),
    Column("status_seq", BigInteger, nullable=False),
    Column("logged_seq", BigInteger, nullable=False),
    Column("live_session_id", String(32), nullable=True, unique=True),
    Column("last_session_id", String(32), nullable=True),
    Column("last_reason", String(32), nullable=True),
    Column("updated_ms", BigInteger, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("channel", String(32), nullable=False, index=True),
    Column("instance", String(100), nullable=False),
    Column("kind", String(16), nullable=False),  # encoder | simulated
    Column("state", String(8), nullable=False),  # open | closed
    Column("source", JSON, nullable=False),
    Column("renditions", JSON, nullable=False),
    Column("open_seq", BigInteger, nullable=False),
    Column("opened_ms", BigInteger, nullable=False),
    Column("lease_expires_ms", BigInteger, nullable=False),
    Column("closed_ms", BigInteger, nullable=True),
    Column("close_reason", String(32), nullable=True),
    Index("ix_sessions_state_lease", "state", "lease_expires_ms"),
)
