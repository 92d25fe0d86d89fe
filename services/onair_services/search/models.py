"""search's tables: the channels (indexed or not) and, for the indexed ones, their tags and renditions.

``search_channels`` keeps every channel's state (``onair_services.media_events.fold_channel``),
also while it is offline, so that going live indexes its current title and tags. A channel is
*indexed* while it is on air and public; only then does it have an entry in the full-text index
(the FTS5 table ``search_fts`` with ``rowid = search_channels.id`` on SQLite, the ``document``
column on PostgreSQL) and rows in ``search_tags`` / ``search_renditions`` (exact filters).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR

from onair.logstream import metadata as logstream_metadata

metadata = MetaData()

channels = Table(
    "search_channels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("adult", Boolean, nullable=False),
    Column("chat_mode", String(16), nullable=False),
    Column("visibility", String(16), nullable=False),
    Column("options_seq", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),
    Column("session_id", String(100), nullable=True),
    Column("started_us", BigInteger, nullable=True),
    Column("ended_us", BigInteger, nullable=True),
    Column("end_reason", String(32), nullable=True),
    Column("meta_session_id", String(100), nullable=True),
    Column("source", JSON, nullable=True),
    Column("renditions", JSON, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    Column("indexed", Boolean, nullable=False),
    # PostgreSQL only: the weighted document of an indexed channel (NULL otherwise)
    Column("document", TSVECTOR().with_variant(Text(), "sqlite"), nullable=True),
    Index("ix_search_channels_indexed", "indexed", "started_us"),
)

tags = Table(
    "search_tags",
    metadata,
    Column("channel_id", Integer, ForeignKey("search_channels.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(64), primary_key=True),
    Index("ix_search_tags_tag", "tag"),
)

renditions = Table(
    "search_renditions",
    metadata,
    Column("channel_id", Integer, ForeignKey("search_channels.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(32), primary_key=True),
    Index("ix_search_renditions_name", "name"),
)

target_metadata = [metadata, logstream_metadata]
