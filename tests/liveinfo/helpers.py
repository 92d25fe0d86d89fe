"""Shared pieces of the liveinfo and search tests: producing media events, a module database, waiting."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from onair.clients import KafkaClient
from onair.db.admin import create_database, drop_database
from onair.logstream import Envelope, Position, new_event_id
from onair.testing import POSTGRES_ENV


def uid(prefix: str = "ch") -> str:
    """A fresh channel id (``^[a-z0-9_]{3,32}$``): topics are shared by every test of the session."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def ts(offset_ms: float = 0, base: datetime | None = None) -> str:
    at = (base or datetime.now(UTC)) + timedelta(milliseconds=offset_ms)
    return at.isoformat().replace("+00:00", "Z")


def event(
    category: str,
    entity: str,
    *,
    seq: int | None = None,
    at: str | None = None,
    event_id: str | None = None,
    **data: Any,
) -> Envelope:
    return Envelope(event_id or new_event_id(), at or ts(), "test", category, entity, seq, data)


def open_(ch: str, session: str, **kw: Any) -> Envelope:
    return event("media.live_stream.status", ch, status="open", session_id=session, **kw)


def close(ch: str, session: str, reason: str = "encoder_closed", **kw: Any) -> Envelope:
    return event("media.live_stream.status", ch, status="close", session_id=session, reason=reason, **kw)


def title(ch: str, text: str, **kw: Any) -> Envelope:
    return event("media.broad_info.title", ch, owner_id=f"u-{ch}", title=text, **kw)


def tags(ch: str, values: Sequence[str], **kw: Any) -> Envelope:
    return event("media.broad_info.tags", ch, owner_id=f"u-{ch}", tags=list(values), **kw)


def options(
    ch: str, visibility: str = "public", adult: bool = False, chat_mode: str = "open", **kw: Any
) -> Envelope:
    return event(
        "media.broad_info.options",
        ch,
        owner_id=f"u-{ch}",
        adult=adult,
        chat_mode=chat_mode,
        visibility=visibility,
        **kw,
    )


RENDITIONS = [
    {"name": "1080p", "height": 1080, "fps": 60, "bitrate_kbps": 6000},
    {"name": "720p", "height": 720, "fps": 60, "bitrate_kbps": 3000},
    {"name": "480p", "height": 480, "fps": 30, "bitrate_kbps": 1500},
]
SOURCE = {"height": 1080, "fps": 60, "codec": "h264", "bitrate_kbps": 6000}


def metadata(ch: str, session: str, renditions: Sequence[dict[str, Any]] = RENDITIONS, **kw: Any) -> Envelope:
    return event(
        "media.live_stream.metadata", ch, session_id=session, source=SOURCE, renditions=list(renditions), **kw
    )


def viewers(ch: str, count: int, process: str, interval_s: float = 5.0, **kw: Any) -> Envelope:
    return event("media.viewer.count", ch, viewers=count, process=process, interval_s=interval_s, **kw)


async def produce(
    kafka: KafkaClient, envelopes: Sequence[Envelope], raw: Sequence[tuple[str, bytes, bytes]] = ()
) -> list[Position]:
    """Send in order (one partition per channel keeps it); return each envelope's position."""
    producer = await kafka.producer()
    try:
        futs = [await producer.send(e.category, e.to_bytes(), key=e.entity.encode()) for e in envelopes]
        futs += [await producer.send(topic, value, key=key) for topic, key, value in raw]
        metas = await asyncio.gather(*futs)
    finally:
        await kafka.release(producer)
    return [Position(m.topic, m.partition, m.offset) for m in metas[: len(envelopes)]]


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0, every_s: float = 0.05
) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - polls a server, not an in-process flag
            await asyncio.sleep(every_s)


@asynccontextmanager
async def module_database(kind: str, tmp: str) -> AsyncIterator[str]:
    """A fresh database for a module's apps: a SQLite file, or a PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp}/module.db"
        return
    admin = os.environ.get(POSTGRES_ENV)
    if not admin:
        pytest.skip(f"{POSTGRES_ENV} is not set (.ci/run sets it); PostgreSQL cases not run")
    name = f"onair_t_{uuid.uuid4().hex[:12]}"
    url = await create_database(admin, name)
    try:
        yield url
    finally:
        await drop_database(admin, name)


@contextmanager
def valkey_namespace(prefix: str) -> Iterator[str]:
    """A Valkey key namespace of the test's own (the apps read it when they start)."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    old = os.environ.get("ONAIR_VALKEY_NAMESPACE")
    os.environ["ONAIR_VALKEY_NAMESPACE"] = name
    try:
        yield name
    finally:
        if old is None:
            os.environ.pop("ONAIR_VALKEY_NAMESPACE", None)
        else:
            os.environ["ONAIR_VALKEY_NAMESPACE"] = old
