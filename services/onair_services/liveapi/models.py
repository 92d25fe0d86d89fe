"""liveapi's tables: one row per channel (the write side; nobody else reads it)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

channels = Table(
    "channels",
    metadata,
    # The streamer's username (``^[a-z0-9_]{3,32}$``): one channel per streamer.
    Column("id", String(32), primary_key=True),
    Column("owner_id", String(64), nullable=False, unique=True),
    Column("title", String(140), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("adult", Boolean, nullable=False),
    Column("chat_mode", String(16), nullable=False),
    Column("visibility", String(16), nullable=False),
    # Hex SHA-256 of the publish key; the key itself is shown once and never stored.
    Column("key_sha256", String(64), nullable=False),
    Column("key_rotated_at", DateTime(timezone=True), nullable=False),
    # Bumped by every write (the ``seq`` of its events); ``logged_version`` is the highest version
    # whose events (and every earlier one's) the broker acknowledged.
    Column("version", BigInteger, nullable=False),
    Column("logged_version", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_channels_updated_at", "updated_at"),
)
