"""Follows: a viewer follows channels and is told when they go live (``/notify/stream``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlalchemy import delete, select

from onair.auth.fastapi import CurrentIdentity
from onair.logstream import upsert
from onair.service import responses
from onair_services.chat.models import follows, rooms
from onair_services.chat.runtime import ChatRuntime, chat_of_request
from onair_services.chat.schemas import Channel, Follows
from onair_services.chat.streams import now_ms

router = APIRouter(prefix="/follows", tags=["follows"])
Chat = Annotated[ChatRuntime, Depends(chat_of_request)]


@router.put("/{channel}", status_code=204, responses=responses(404), summary="Follow a channel")
async def follow(channel: Channel, caller: CurrentIdentity, chat: Chat) -> None:
    """Idempotent: following again keeps the original date."""
    await chat.rooms.require(channel)
    async with chat.svc.session() as session, session.begin():
        await upsert(
            session,
            follows,
            [
                {
                    "user_id": caller.user_id,
                    "channel": channel,
                    "username": caller.username,
                    "created_ms": now_ms(),
                }
            ],
            ["user_id", "channel"],
            update=["username"],
        )


@router.delete("/{channel}", status_code=204, summary="Stop following a channel")
async def unfollow(channel: Channel, caller: CurrentIdentity, chat: Chat) -> None:
    """Idempotent: not following is not an error."""
    async with chat.svc.session() as session, session.begin():
        await session.execute(
            delete(follows).where(follows.c.user_id == caller.user_id, follows.c.channel == channel)
        )


@router.get("", response_model=Follows, summary="The channels I follow")
async def my_follows(caller: CurrentIdentity, chat: Chat) -> dict[str, Any]:
    async with chat.svc.session() as session:
        rows = (
            await session.execute(
                select(follows.c.channel, follows.c.created_ms, rooms.c.live, rooms.c.title)
                .select_from(follows.outerjoin(rooms, rooms.c.channel == follows.c.channel))
                .where(follows.c.user_id == caller.user_id)
                .order_by(follows.c.created_ms.desc())
            )
        ).all()
    return {
        "follows": [
            {"channel": r[0], "since_ms": r[1], "live": bool(r[2]), "title": r[3] or ""} for r in rows
        ]
    }
