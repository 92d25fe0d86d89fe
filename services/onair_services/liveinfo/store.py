"""liveinfo's SQL: reading channel rows, and keeping the viewer totals of channels up to date.

The viewer total of a channel is the sum of the latest count of each chat process that is still
fresh (``expires_us`` after now). It lives in ``live_channels.viewers`` so that a channel's view is
one row; it is recomputed when counts arrive (the ``liveinfo.viewers`` projection) and when counts
expire (the sweeper), both through :func:`refresh_totals`, which locks the channel rows first (in
channel order, as the channels projection writes them) so two writers never interleave a total.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from onair.logstream import excluded, upsert
from onair_services.liveinfo.models import channels, viewer_counts
from onair_services.media_events import new_channel_state

CHUNK = 500


def new_row(channel: str) -> dict[str, Any]:
    """A channel liveinfo has not seen yet (every column, for inserts)."""
    return {**new_channel_state(channel), "viewers": 0, "version": 0}


async def rows_of(
    session: AsyncSession, names: Collection[str], *, for_update: bool = False
) -> dict[str, dict[str, Any]]:
    """The rows of ``names`` that exist, by channel (locked, in channel order, with ``for_update``)."""
    out: dict[str, dict[str, Any]] = {}
    ordered = sorted(names)
    for i in range(0, len(ordered), CHUNK):
        stmt = select(channels).where(channels.c.channel.in_(ordered[i : i + CHUNK]))
        if for_update:
            stmt = stmt.order_by(channels.c.channel).with_for_update()
        for row in (await session.execute(stmt)).mappings():
            out[row["channel"]] = dict(row)
    return out


async def row_of(session: AsyncSession, channel: str) -> dict[str, Any] | None:
    row = (await session.execute(select(channels).where(channels.c.channel == channel))).mappings().first()
    return dict(row) if row is not None else None


async def listed_rows(session: AsyncSession) -> list[dict[str, Any]]:
    """Every channel on air and public, newest session first."""
    stmt = (
        select(channels.c.channel, channels.c.title, channels.c.tags, channels.c.adult, channels.c.started_us)
        .where(channels.c.status == "live", channels.c.visibility == "public")
        .order_by(channels.c.started_us.desc(), channels.c.channel)
    )
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def ranked_rows(session: AsyncSession, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Title and listing state of ``names`` (for the ranking view)."""
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(names), CHUNK):
        stmt = select(channels.c.channel, channels.c.title, channels.c.status, channels.c.visibility).where(
            channels.c.channel.in_(list(names[i : i + CHUNK]))
        )
        for row in (await session.execute(stmt)).mappings():
            out[row["channel"]] = dict(row)
    return out


async def viewer_totals(session: AsyncSession) -> dict[str, int]:
    """Channels with viewers, and how many (to rebuild the ranking)."""
    stmt = select(channels.c.channel, channels.c.viewers).where(channels.c.viewers > 0)
    return {r[0]: int(r[1]) for r in (await session.execute(stmt)).all()}


async def write_counts(session: AsyncSession, counts: Sequence[Mapping[str, Any]]) -> None:
    """Upsert the latest count per (channel, process); an older count never replaces a newer one."""
    if not counts:
        return
    ex = excluded(session, viewer_counts)
    newer = ex.ts_us > viewer_counts.c.ts_us
    pick = {  # CASE WHEN excluded.ts_us > ts_us THEN excluded.col ELSE col END
        col: case((newer, ex[col]), else_=viewer_counts.c[col]) for col in ("viewers", "ts_us", "expires_us")
    }
    rows = sorted(counts, key=lambda r: (r["channel"], r["process"]))
    await upsert(session, viewer_counts, rows, ["channel", "process"], pick)


async def expire_counts(session: AsyncSession, now_us: int) -> set[str]:
    """Delete the counts that expired; return their channels."""
    stmt = (
        delete(viewer_counts).where(viewer_counts.c.expires_us <= now_us).returning(viewer_counts.c.channel)
    )
    return {r[0] for r in (await session.execute(stmt)).all()}


async def refresh_totals(
    session: AsyncSession, names: Collection[str], now_us: int
) -> dict[str, dict[str, Any]]:
    """Recompute the viewer totals of ``names``; return the rows whose total changed (as stored)."""
    if not names:
        return {}
    current = await rows_of(session, names, for_update=True)  # lock first: see docstring
    totals: dict[str, int] = {}
    ordered = sorted(names)
    for i in range(0, len(ordered), CHUNK):
        stmt = (
            select(viewer_counts.c.channel, func.sum(viewer_counts.c.viewers))
            .where(viewer_counts.c.channel.in_(ordered[i : i + CHUNK]), viewer_counts.c.expires_us > now_us)
            .group_by(viewer_counts.c.channel)
        )
        totals.update({r[0]: int(r[1] or 0) for r in (await session.execute(stmt)).all()})
    changed: list[dict[str, Any]] = []
    for name in ordered:
        total = totals.get(name, 0)
        row = current.get(name)
        if row is None and total == 0:
            continue  # nothing to say about a channel nobody watches and liveinfo never saw
        if row is not None and int(row["viewers"]) == total:
            continue
        changed.append({**new_row(name), "viewers": total, "version": 1})
    if not changed:
        return {}
    ex = excluded(session, channels)
    await upsert(
        session, channels, changed, ["channel"], {"viewers": ex.viewers, "version": channels.c.version + 1}
    )
    return await rows_of(session, [r["channel"] for r in changed])
