"""chat's projections of the log stream (consumer groups ``projection.chat.rooms`` / ``.notify``).

* ``chat.rooms`` (``media.broad_info.options``, ``media.broad_info.title``,
  ``media.live_stream.status``): one row per channel with its owner, ``chat_mode``, title and
  whether it is live; a channel is a room from its first event. After each commit the changed
  rooms are invalidated in every process's near cache (Valkey tombstones).
* ``chat.notify`` (``media.live_stream.status``): one outbox row per go-live (see
  :mod:`onair_services.chat.notify`); after the commit this process publishes them.

Both ``apply`` functions are pure functions of the events and the database state and do not
commit; the runner drops stale and duplicate events per channel and dead-letters bad ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from onair.logstream import Event, Projection, upsert
from onair_services.chat.models import golive, rooms
from onair_services.chat.settings import ChatSettings
from onair_services.media_events import (
    OPTIONS,
    STATUS,
    TITLE,
    OptionsData,
    StatusData,
    TitleData,
    channel_of,
    parse,
)


def _ms(event: Event) -> int:
    return event.envelope.ts_us // 1000


async def apply_rooms(events: Sequence[Event], session: AsyncSession) -> None:
    options: dict[str, dict[str, Any]] = {}
    titles: dict[str, dict[str, Any]] = {}
    status: dict[str, dict[str, Any]] = {}
    for e in events:
        channel = channel_of(e.entity)
        category = e.envelope.category
        if category == OPTIONS:
            o = parse(OptionsData, e.data)
            owner = e.data.get("owner_id")
            options[channel] = {
                "channel": channel,
                "owner_id": str(owner) if owner is not None else None,
                "chat_mode": o.chat_mode,
                "updated_ms": _ms(e),
            }
        elif category == TITLE:
            t = parse(TitleData, e.data)
            titles[channel] = {"channel": channel, "title": t.title, "updated_ms": _ms(e)}
        elif category == STATUS:
            s = parse(StatusData, e.data)
            status[channel] = {
                "channel": channel,
                "live": s.status == "open",
                "session_id": s.session_id,
                "updated_ms": _ms(e),
            }
    await upsert(session, rooms, list(options.values()), ["channel"])
    await upsert(session, rooms, list(titles.values()), ["channel"])
    await upsert(session, rooms, list(status.values()), ["channel"])


def rooms_projection(after_commit: Any) -> Projection:
    return Projection(
        name="chat.rooms", topics=[OPTIONS, TITLE, STATUS], apply=apply_rooms, after_commit=after_commit
    )


def make_apply_notify(settings: ChatSettings) -> Any:
    cooldown_ms = int(settings.notify_cooldown_s * 1000)

    async def apply_notify(events: Sequence[Event], session: AsyncSession) -> None:
        latest: dict[str, int] = {}  # channel -> opened_ms of its latest notified go-live
        for e in events:
            s = parse(StatusData, e.data)
            if s.status != "open":
                continue
            channel = channel_of(e.entity)
            opened = _ms(e)
            known = (
                await session.execute(select(golive.c.session_id).where(golive.c.session_id == s.session_id))
            ).first()
            if known is not None:
                continue
            if channel not in latest:
                row = (
                    await session.execute(
                        select(golive.c.opened_ms)
                        .where(golive.c.channel == channel, golive.c.state != "suppressed")
                        .order_by(golive.c.opened_ms.desc())
                        .limit(1)
                    )
                ).first()
                latest[channel] = row[0] if row is not None else -(1 << 62)
            state = "suppressed" if opened - latest[channel] < cooldown_ms else "pending"
            if state == "pending":
                latest[channel] = opened
            title = (
                await session.execute(select(rooms.c.title).where(rooms.c.channel == channel))
            ).scalar_one_or_none()
            await upsert(
                session,
                golive,
                [
                    {
                        "session_id": s.session_id,
                        "channel": channel,
                        "title": title or "",
                        "opened_ms": opened,
                        "state": state,
                    }
                ],
                ["session_id"],
                update=[],
            )

    return apply_notify


def notify_projection(settings: ChatSettings, after_commit: Any) -> Projection:
    return Projection(
        name="chat.notify", topics=[STATUS], apply=make_apply_notify(settings), after_commit=after_commit
    )
