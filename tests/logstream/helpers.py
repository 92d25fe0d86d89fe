"""Shared pieces of the log-stream tests: a counting read model, producing envelopes, waiting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from onair.clients import KafkaClient
from onair.db import session_factory
from onair.logstream import Envelope, Event, Projection, excluded, new_event_id, upsert

model = MetaData()
counts = Table(
    "t_counts",
    model,
    Column("entity", String(100), primary_key=True),
    Column("n", Integer, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("last", String(100), nullable=True),
)
BASE_TS = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


def uid(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def envelope(
    category: str, entity: str, *, seq: int | None = None, ts_offset_ms: int = 0, **data: Any
) -> Envelope:
    ts = (BASE_TS + timedelta(milliseconds=ts_offset_ms)).isoformat().replace("+00:00", "Z")
    return Envelope(new_event_id(), ts, "test", category, entity, seq, data)


async def counting_apply(batch: Sequence[Event], session: AsyncSession) -> None:
    """n = events applied per entity, total = sum of data.value, last = data.state of the newest."""
    agg: dict[str, dict[str, Any]] = {}
    for e in batch:
        row = agg.setdefault(e.entity, {"entity": e.entity, "n": 0, "total": 0, "last": None})
        row["n"] += 1
        row["total"] += int(e.data.get("value", 0))
        row["last"] = e.decided if e.decided is not None else e.data.get("state")
    ex = excluded(session, counts)
    await upsert(
        session,
        counts,
        list(agg.values()),
        ["entity"],
        {"n": counts.c.n + ex.n, "total": counts.c.total + ex.total, "last": ex["last"]},
    )


def counting_projection(name: str, topics: list[str], **kwargs: Any) -> Projection:
    return Projection(name, topics, counting_apply, **kwargs)


async def read_counts(engine: AsyncEngine) -> dict[str, tuple[int, int, str | None]]:
    async with session_factory(engine)() as session:
        rows = (
            await session.execute(select(counts.c.entity, counts.c.n, counts.c.total, counts.c.last))
        ).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


async def produce(
    kafka: KafkaClient, envelopes: Sequence[Envelope], raw: Sequence[tuple[str, bytes, bytes]] = ()
) -> None:
    producer = await kafka.producer()
    try:
        futs = [await producer.send(e.category, e.to_bytes(), key=e.entity.encode()) for e in envelopes]
        futs += [await producer.send(topic, value, key=key) for topic, key, value in raw]
        await asyncio.gather(*futs)
    finally:
        await kafka.release(producer)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0, every_s: float = 0.1
) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - polls a database, not an in-process flag
            await asyncio.sleep(every_s)
