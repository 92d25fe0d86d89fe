"""liveinfo's tables: one row per channel (its live view), and the latest viewer count per chat process.

Times are microseconds since the epoch (``*_us``), the same on SQLite and PostgreSQL; views render
them as RFC 3339. ``version`` grows by one on every change of a channel's row, whichever projection
made it, so a reader of the live stream can tell an older view from a newer one.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text

from onair.logstream import metadata as logstream_metadata

metadata = MetaData()

channels = Table(
    "live_channels",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("title", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False, default=list),
    Column("adult", Boolean, nullable=False, default=False),
    Column("chat_mode", String(16), nullable=False, default="open"),
    Column("visibility", String(16), nullable=False, default="public"),
    # seq (or event time) of the last options event applied to adult/chat_mode; visibility is
    # decided by the vote rule instead, so every options event takes part in it.
    Column("options_seq", BigInteger, nullable=True),
    Column("status", String(16), nullable=False, default="offline"),
    Column("session_id", String(100), nullable=True),
    Column("started_us", BigInteger, nullable=True),
    Column("ended_us", BigInteger, nullable=True),
    Column("end_reason", String(32), nullable=True),
    # metadata of a session (it may arrive before or after that session's "open")
    Column("meta_session_id", String(100), nullable=True),
    Column("source", JSON, nullable=True),
    Column("renditions", JSON, nullable=False, default=list),
    Column("viewers", Integer, nullable=False, default=0),
    Column("version", BigInteger, nullable=False, default=0),
    Column("updated_us", BigInteger, nullable=False, default=0),
    Index("ix_live_channels_status", "status", "visibility"),
)

viewer_counts = Table(
    "live_viewer_counts",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("process", String(200), primary_key=True),
    Column("viewers", Integer, nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    # ts + stale_intervals x interval_s: the count no longer counts after this
    Column("expires_us", BigInteger, nullable=False),
    Index("ix_live_viewer_counts_expires", "expires_us"),
)

#: What Alembic compares against (the platform's projection tables included, so autogenerate
#: leaves them alone).
target_metadata = [metadata, logstream_metadata]
