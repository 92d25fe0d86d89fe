"""Poison records: kept with their raw bytes and the reason, so the projection carries on.

Reasons: ``undecodable`` (not JSON), ``invalid`` (not a valid envelope), ``apply_failed`` (the
projection's ``apply`` raised for this one record). Rows are inserted in the same transaction as
the batch and its offsets, so a record is dead-lettered exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from onair.logstream.schema import projection_dead_letters

UNDECODABLE = "undecodable"
INVALID = "invalid"
APPLY_FAILED = "apply_failed"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    projection: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    error: str

    def to_row(self) -> dict[str, Any]:
        return {
            "projection": self.projection,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "value": self.value,
            "reason": self.reason,
            "error": self.error[:4000],
        }


async def record(session: AsyncSession, letters: list[DeadLetter]) -> None:
    if letters:
        await session.execute(projection_dead_letters.insert(), [d.to_row() for d in letters])


async def list_dead_letters(session: AsyncSession, projection: str) -> list[DeadLetter]:
    t = projection_dead_letters
    rows = (
        await session.execute(
            select(
                t.c.projection,
                t.c.topic,
                t.c.partition,
                t.c.offset,
                t.c.key,
                t.c.value,
                t.c.reason,
                t.c.error,
            )
            .where(t.c.projection == projection)
            .order_by(t.c.id)
        )
    ).all()
    return [DeadLetter(*row) for row in rows]
