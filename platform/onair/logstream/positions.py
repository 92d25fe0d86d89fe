"""Read-your-writes on demand: the position of a logged event, and a bounded wait for it.

A write API logs its event through :meth:`onair.logstream.LogStreamSink.log_event`, which returns
the :class:`Position` (topic, partition, offset) once the broker acknowledged it, and hands
``str(position)`` to its caller. A read API given that position calls :func:`wait_for_position`
before reading: it returns as soon as the projection has applied the position, or raises
:class:`ReadYourWritesError` after the bound (default 2 s) — ``NotYetApplied`` maps to HTTP 503
with ``Retry-After``, ``UnknownPosition`` (malformed, or a topic the projection does not read) to
409; ``error.body`` is the JSON body. Without a position, reads are eventually consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from onair.db import session_factory
from onair.logstream.schema import projection_offsets

if TYPE_CHECKING:
    from onair.logstream.runner import ProjectionRunner

DEFAULT_WAIT_S = 2.0


@dataclass(frozen=True, slots=True)
class Position:
    """Where one event landed: ``media.broad_info.title:3:1207``."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position:
        topic, sep, rest = text.rpartition(":")
        topic2, sep2, part = topic.rpartition(":")
        try:
            if not (sep and sep2 and topic2):
                raise ValueError(text)
            return cls(topic2, int(part), int(rest))
        except ValueError:
            raise UnknownPosition(text, "expected <topic>:<partition>:<offset>") from None


class ReadYourWritesError(Exception):
    """The read cannot honour the given position; ``status`` and ``body`` are the HTTP answer."""

    status = 503

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("detail", body.get("error")))
        self.body = body

    @property
    def headers(self) -> dict[str, str]:
        return {}


class NotYetApplied(ReadYourWritesError):
    status = 503

    def __init__(self, projection: str, position: Position, applied: int | None, waited_s: float) -> None:
        super().__init__(
            {
                "error": "not_yet_applied",
                "detail": f"projection {projection} has not applied {position} after {waited_s:.2f}s; retry",
                "projection": projection,
                "position": str(position),
                "applied_up_to": applied,
                "waited_ms": round(waited_s * 1000),
            }
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class UnknownPosition(ReadYourWritesError):
    status = 409

    def __init__(self, position: str, reason: str) -> None:
        super().__init__({"error": "unknown_position", "detail": reason, "position": position})


async def applied_offset(engine: AsyncEngine, projection: str, topic: str, partition: int) -> int | None:
    """The next offset the projection will apply on a partition, from its database."""
    t = projection_offsets
    async with session_factory(engine)() as session:
        return (
            await session.execute(
                select(t.c.next_offset).where(
                    and_(t.c.projection == projection, t.c.topic == topic, t.c.partition == partition)
                )
            )
        ).scalar_one_or_none()


async def wait_for_position(
    engine: AsyncEngine,
    projection: str,
    position: Position | str,
    *,
    timeout_s: float = DEFAULT_WAIT_S,
    topics: list[str] | None = None,
    runner: ProjectionRunner | None = None,
    poll_s: float = 0.02,
) -> None:
    """Return once ``projection`` has applied ``position``; raise NotYetApplied after ``timeout``.

    With ``runner`` (same process) it wakes on each commit; otherwise it polls the offsets table,
    which works from any process sharing the database.
    """
    pos = Position.parse(position) if isinstance(position, str) else position
    if topics is not None and pos.topic not in topics:
        raise UnknownPosition(str(pos), f"projection {projection} does not read topic {pos.topic}")
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        applied = await applied_offset(engine, projection, pos.topic, pos.partition)
        if applied is not None and applied > pos.offset:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise NotYetApplied(projection, pos, applied, time.monotonic() - started)
        if runner is not None and runner.applied_offset(pos.topic, pos.partition) is not None:
            with contextlib.suppress(TimeoutError):
                await runner.wait_for(pos, min(left, 0.5))
        else:
            await asyncio.sleep(min(poll_s, left))


def install_fastapi_handler(app: Any) -> None:
    """Map :class:`ReadYourWritesError` to its status and JSON body in a FastAPI app."""
    from fastapi.responses import JSONResponse

    async def _handler(_request: Any, exc: Exception) -> Any:
        assert isinstance(exc, ReadYourWritesError)
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    app.add_exception_handler(ReadYourWritesError, _handler)
