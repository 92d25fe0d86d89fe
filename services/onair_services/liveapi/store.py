"""liveapi's database rules: create, read, change and re-key channels; track what is logged.

Every write bumps the channel's ``version`` in one short transaction (optimistic: ``UPDATE …
WHERE version = <read>``, retried on a race, the same on SQLite and PostgreSQL) and reports which
fields changed. ``mark_logged`` advances ``logged_version`` only over contiguous versions, so a
write whose events were not acknowledged keeps its channel lagging until the re-logger has
logged a newer state (see docs/liveapi.md).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair_services.liveapi.models import channels

FIELDS = ("publish_key", "title", "tags", "options")
OPTION_NAMES = ("adult", "chat_mode", "visibility")
KEY_PREFIX = "live_"
_MAX_RACE_RETRIES = 20


class ChannelExists(Exception):
    """The channel (or a channel of this owner) exists already."""


class ChannelNotFound(Exception):
    pass


class WriteConflict(Exception):
    """Too many concurrent writes to one channel; the caller may retry."""


@dataclass(frozen=True)
class Channel:
    id: str
    owner_id: str
    title: str
    tags: list[str]
    options: dict[str, Any]
    key_sha256: str
    key_rotated_at: datetime
    version: int
    logged_version: int
    created_at: datetime
    updated_at: datetime

    @property
    def key_fingerprint(self) -> str:
        return f"sha256:{self.key_sha256[:8]}"


@dataclass(frozen=True)
class Write:
    """The channel after a write, the fields it changed and the version it had before."""

    channel: Channel
    changed: tuple[str, ...]
    previous_version: int
    publish_key: str | None = field(default=None, repr=False)


def new_publish_key() -> str:
    """32 random bytes, URL-safe, with a recognisable prefix (secret scanners, humans)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # SQLite drops the zone


def _row(row: Any) -> Channel:
    m = row._mapping
    return Channel(
        id=m["id"],
        owner_id=m["owner_id"],
        title=m["title"],
        tags=list(m["tags"]),
        options={n: m[n] for n in OPTION_NAMES},
        key_sha256=m["key_sha256"],
        key_rotated_at=_utc(m["key_rotated_at"]),
        version=int(m["version"]),
        logged_version=int(m["logged_version"]),
        created_at=_utc(m["created_at"]),
        updated_at=_utc(m["updated_at"]),
    )


class ChannelStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def get(self, channel_id: str) -> Channel | None:
        async with self.sessions() as session:
            row = (await session.execute(select(channels).where(channels.c.id == channel_id))).first()
        return _row(row) if row is not None else None

    async def create(
        self, channel_id: str, owner_id: str, title: str, tags: Sequence[str], options: Mapping[str, Any]
    ) -> Write:
        key = new_publish_key()
        at = now()
        values = {
            "id": channel_id,
            "owner_id": owner_id,
            "title": title,
            "tags": list(tags),
            **{n: options[n] for n in OPTION_NAMES},
            "key_sha256": key_digest(key),
            "key_rotated_at": at,
            "version": 1,
            "logged_version": 0,
            "created_at": at,
            "updated_at": at,
        }
        try:
            async with self.sessions() as session, session.begin():
                await session.execute(insert(channels).values(**values))
        except IntegrityError:
            raise ChannelExists(channel_id) from None
        channel = Channel(
            **{k: v for k, v in values.items() if k not in OPTION_NAMES},
            options={n: options[n] for n in OPTION_NAMES},
        )
        return Write(channel, FIELDS, 0, publish_key=key)

    async def change(
        self,
        channel_id: str,
        *,
        title: str | None = None,
        tags: Sequence[str] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Write:
        """Apply the given fields; a field equal to its current value is not a change.

        Nothing changed: no new version (``changed`` is empty).
        """
        for _ in range(_MAX_RACE_RETRIES):
            current = await self.get(channel_id)
            if current is None:
                raise ChannelNotFound(channel_id)
            values: dict[str, Any] = {}
            changed: list[str] = []
            if title is not None and title != current.title:
                values["title"] = title
                changed.append("title")
            if tags is not None and list(tags) != current.tags:
                values["tags"] = list(tags)
                changed.append("tags")
            if options is not None:
                merged = {**current.options, **{k: v for k, v in options.items() if v is not None}}
                if merged != current.options:
                    values.update(merged)
                    changed.append("options")
            if not changed:
                return Write(current, (), current.version)
            written = await self._bump(current, values)
            if written is not None:
                return Write(written, tuple(changed), current.version)
        raise WriteConflict(channel_id)

    async def rotate_key(self, channel_id: str) -> Write:
        for _ in range(_MAX_RACE_RETRIES):
            current = await self.get(channel_id)
            if current is None:
                raise ChannelNotFound(channel_id)
            key = new_publish_key()
            written = await self._bump(current, {"key_sha256": key_digest(key), "key_rotated_at": now()})
            if written is not None:
                return Write(written, ("publish_key",), current.version, publish_key=key)
        raise WriteConflict(channel_id)

    async def _bump(self, current: Channel, values: dict[str, Any]) -> Channel | None:
        """``UPDATE … SET values, version+1 WHERE version = <read>``: None when another write won."""
        at = now()
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(channels)
                .where(and_(channels.c.id == current.id, channels.c.version == current.version))
                .values(**values, version=current.version + 1, updated_at=at)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = (await session.execute(select(channels).where(channels.c.id == current.id))).one()
        return _row(row)

    async def mark_logged(self, channel_id: str, version: int, previous_version: int) -> bool:
        """After every event of ``version`` was acknowledged: advance ``logged_version`` if every
        earlier version was logged too (otherwise the channel stays lagging for the re-logger)."""
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(channels)
                .where(and_(channels.c.id == channel_id, channels.c.logged_version == previous_version))
                .values(logged_version=version)
            )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def mark_relogged(self, channel_id: str, version: int) -> bool:
        """After the whole state at ``version`` was re-logged: everything up to it is on the log."""
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(channels)
                .where(and_(channels.c.id == channel_id, channels.c.logged_version < version))
                .values(logged_version=version)
            )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def lagging(self, written_before: datetime, limit: int) -> list[Channel]:
        """Channels whose events may be missing from the log, last written before the cutoff."""
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(channels)
                    .where(
                        and_(
                            channels.c.logged_version < channels.c.version,
                            channels.c.updated_at < written_before,
                        )
                    )
                    .order_by(channels.c.updated_at)
                    .limit(limit)
                )
            ).all()
        return [_row(r) for r in rows]


def cutoff(grace_s: float) -> datetime:
    return now() - timedelta(seconds=grace_s)
