"""chat's own tables: the rooms projection, follows, mutes, and the go-live outbox.

Times are epoch milliseconds (``*_ms``): compared in SQL the same way on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, false

from onair.logstream.schema import metadata as logstream_metadata

metadata = MetaData()

rooms = Table(
    "chat_rooms",
    metadata,
    Column("channel", String(32), primary_key=True),
    Column("owner_id", String(128), nullable=True),
    Column("chat_mode", String(16), nullable=False, server_default="open"),
    Column("title", String(1000), nullable=False, server_default=""),
    Column("live", Boolean, nullable=False, server_default=false()),
    Column("session_id", String(100), nullable=True),
    Column("updated_ms", BigInteger, nullable=False),
)
"""Projection ``chat.rooms`` of ``media.broad_info.options``/``title`` and ``media.live_stream.status``."""

follows = Table(
    "chat_follows",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("username", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_chat_follows_channel", "channel", "user_id"),
)

mutes = Table(
    "chat_mutes",
    metadata,
    Column("channel", String(32), primary_key=True),
    Column("username", String(64), primary_key=True),
    Column("muted_by", String(64), nullable=False),
    Column("reason", String(200), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("until_ms", BigInteger, nullable=True),
)

golive = Table(
    "chat_golive",
    metadata,
    Column("session_id", String(100), primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("title", String(1000), nullable=False, server_default=""),
    Column("opened_ms", BigInteger, nullable=False),
    # pending -> sent (published to every follower) | suppressed (cool-down) | expired (too old)
    Column("state", String(16), nullable=False),
    Column("claimed_by", String(200), nullable=True),
    Column("claimed_until_ms", BigInteger, nullable=True),
    Column("sent_ms", BigInteger, nullable=True),
    Column("notified", Integer, nullable=False, server_default="0"),
    Index("ix_chat_golive_state", "state", "opened_ms"),
    Index("ix_chat_golive_channel", "channel", "opened_ms"),
)
"""Projection ``chat.notify`` of ``media.live_stream.status``: one row per go-live (an outbox)."""

ALL_METADATA = (metadata, logstream_metadata)
