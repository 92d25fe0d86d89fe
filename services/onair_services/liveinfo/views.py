"""What liveinfo answers: a channel's view, the on-air list's items, the ranking's entries.

Views are plain JSON-ready dicts built from a ``live_channels`` row (they are what the cache
stores and what ``live.channel.<channel>`` carries); the pydantic models describe the same shapes
for the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from onair_services.media_events import Rendition, Source, current_renditions

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(us: int | None) -> str | None:
    """Microseconds since the epoch -> ``2026-11-27T07:40:01.123456Z``."""
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_listed(row: Mapping[str, Any]) -> bool:
    """On air and public: in ``GET /live`` and the ranking."""
    return row["status"] == "live" and row["visibility"] == "public"


def channel_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """The view of one channel. Source and renditions are those of the session on air (metadata
    of another session, e.g. arriving before its ``open``, is kept but not shown)."""
    live = row["status"] == "live"
    renditions = current_renditions(row)
    current = live and row["meta_session_id"] is not None and row["meta_session_id"] == row["session_id"]
    return {
        "channel": row["channel"],
        "title": row["title"],
        "tags": list(row["tags"] or ()),
        "adult": bool(row["adult"]),
        "chat_mode": row["chat_mode"],
        "visibility": row["visibility"],
        "status": row["status"],
        "session_id": row["session_id"] if live else None,
        "started_at": iso(row["started_us"]) if live else None,
        "ended_at": None if live else iso(row["ended_us"]),
        "end_reason": None if live else row["end_reason"],
        "source": row["source"] if current else None,
        "renditions": renditions,
        "viewers": int(row["viewers"]),
        "version": int(row["version"]),
        "updated_at": iso(row["updated_us"]),
    }


def list_item(row: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of the on-air list: only what a change of status/title/tags/options touches, so
    the list's cache key is invalidated exactly when an entry changes."""
    return {
        "channel": row["channel"],
        "title": row["title"],
        "tags": list(row["tags"] or ()),
        "adult": bool(row["adult"]),
        "started_at": iso(row["started_us"]),
    }


def list_entry(row: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What the on-air list holds of a row (None: not listed); compared before/after a change."""
    if not is_listed(row):
        return None
    return (row["title"], tuple(row["tags"] or ()), bool(row["adult"]), row["started_us"])


def ranking_entry(row: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What the ranking shows of a row besides its score (None: not ranked)."""
    return (row["title"],) if is_listed(row) else None


# -- the shapes, for OpenAPI -------------------------------------------------------------------


class ChannelView(BaseModel):
    channel: str = Field(description="Channel id (the streamer's username)")
    title: str
    tags: list[str]
    adult: bool
    chat_mode: str = Field(description="open | followers | slow")
    visibility: Literal["public", "hidden"] = Field(
        description="hidden: unlisted — not in GET /live, the ranking or search, but its page works"
    )
    status: Literal["live", "offline"]
    session_id: str | None = Field(description="The ingest session on air (null when offline)")
    started_at: str | None = Field(description="When the session on air started (RFC 3339)")
    ended_at: str | None = Field(description="When the last session ended (offline only)")
    end_reason: str | None = Field(description="Why the last session ended (offline only)")
    source: Source | None = Field(description="What the encoder sends (live only)")
    renditions: list[Rendition] = Field(description="What viewers can pick (live only)")
    viewers: int = Field(description="Sum of the fresh counts of every chat process")
    version: int = Field(description="Grows with every change of this view (newest wins)")
    updated_at: str | None = Field(description="Event time of the last change of the channel's info")


class LiveItem(BaseModel):
    channel: str
    title: str
    tags: list[str]
    adult: bool
    started_at: str | None


class LivePage(BaseModel):
    items: list[LiveItem]
    page: int
    limit: int
    total: int = Field(description="Channels on air matching the filter")


class RankingEntry(BaseModel):
    rank: int
    channel: str
    title: str
    viewers: int


class Ranking(BaseModel):
    items: list[RankingEntry]
