"""Moderation, authorised here: the channel's owner or an admin deletes messages and mutes users."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path
from sqlalchemy import delete, select

from onair.auth import Identity
from onair.auth.fastapi import CurrentIdentity
from onair.fanout.bridge import FanoutMessage
from onair.logstream import upsert
from onair.service import ApiError, responses
from onair_services.chat import metrics
from onair_services.chat.models import mutes
from onair_services.chat.rooms import Room
from onair_services.chat.runtime import ChatRuntime, chat_of_request
from onair_services.chat.schemas import USERNAME_PATTERN, Channel, Mute, Mutes, NewMute
from onair_services.chat.streams import now_ms

router = APIRouter(prefix="/chat", tags=["moderation"])
Chat = Annotated[ChatRuntime, Depends(chat_of_request)]
Username = Annotated[str, Path(pattern=USERNAME_PATTERN, description="The muted user's username")]


async def moderated_room(chat: ChatRuntime, channel: str, caller: Identity) -> Room:
    room = await chat.rooms.require(channel)
    if not room.moderated_by(caller):
        raise ApiError(403, "forbidden", f"only the owner of {channel!r} or an admin may moderate this room")
    return room


@router.delete(
    "/{channel}/messages/{message_id}",
    status_code=204,
    responses=responses(403, 404),
    summary="Delete a message (owner or admin)",
)
async def delete_message(
    channel: Channel,
    message_id: Annotated[int, Path(ge=1, description="The message's id")],
    caller: CurrentIdentity,
    chat: Chat,
) -> None:
    """Viewers get ``{"type":"delete","id":<message id>, ...}``. Deleting a deleted message is a
    no-op; a message the room no longer retains is 404."""
    await moderated_room(chat, channel, caller)
    flog = await chat.feeds.room(channel)
    chat.feeds.touch(flog)
    found = already = False
    for _seq, item in flog.retained():
        if not isinstance(item, FanoutMessage):
            continue
        event = orjson.loads(item.data)
        if event.get("id") != message_id:
            continue
        if event.get("type") in ("message", "donation"):
            found = True
        elif event.get("type") == "delete":
            already = True
    if not found:
        raise ApiError(404, "not_found", f"no message {message_id} in {channel!r} (or no longer retained)")
    if already:
        return
    await chat.publisher.publish(
        channel,
        {"type": "delete", "by": caller.username},
        event_id=message_id,
        msg_id=f"delete:{channel}:{message_id}",
    )
    metrics.POSTED.labels("delete").inc()


def _mute_out(channel: str, row: Any) -> dict[str, Any]:
    return {
        "channel": channel,
        "user": row.username,
        "muted_by": row.muted_by,
        "reason": row.reason,
        "created_ms": row.created_ms,
        "until_ms": row.until_ms,
    }


@router.post(
    "/{channel}/mutes",
    status_code=201,
    response_model=Mute,
    responses=responses(403, 404),
    summary="Mute a user in the room (owner or admin)",
)
async def mute(channel: Channel, body: NewMute, caller: CurrentIdentity, chat: Chat) -> dict[str, Any]:
    """The user's posts here are refused (403 ``muted``) until the mute ends or is lifted. Muting
    again replaces the mute. The owner cannot be muted in their own room (422)."""
    await moderated_room(chat, channel, caller)
    if body.user == channel:
        raise ApiError(
            422,
            "invalid_request",
            "body.user: the channel's owner cannot be muted in their own room",
            fields=[{"field": "body.user", "message": "the channel's owner cannot be muted"}],
        )
    now = now_ms()
    row = {
        "channel": channel,
        "username": body.user,
        "muted_by": caller.username,
        "reason": body.reason,
        "created_ms": now,
        "until_ms": now + body.duration_s * 1000 if body.duration_s else None,
    }

    async def commit() -> None:
        async with chat.svc.session() as session, session.begin():
            await upsert(session, mutes, [row], ["channel", "username"])

    await chat.rooms.mute_reader.write(chat.rooms.mute_key(channel, body.user), commit)
    chat.svc.log.info(
        "user muted", channel=channel, user=body.user, by=caller.username, until_ms=row["until_ms"]
    )
    return {
        "channel": channel,
        "user": body.user,
        "muted_by": caller.username,
        "reason": body.reason,
        "created_ms": now,
        "until_ms": row["until_ms"],
    }


@router.delete(
    "/{channel}/mutes/{user}",
    status_code=204,
    responses=responses(403, 404),
    summary="Lift a mute (owner or admin)",
)
async def unmute(channel: Channel, user: Username, caller: CurrentIdentity, chat: Chat) -> None:
    await moderated_room(chat, channel, caller)
    removed = 0

    async def commit() -> None:
        nonlocal removed
        async with chat.svc.session() as session, session.begin():
            result = await session.execute(
                delete(mutes).where(mutes.c.channel == channel, mutes.c.username == user)
            )
            removed = result.rowcount  # type: ignore[attr-defined]

    await chat.rooms.mute_reader.write(chat.rooms.mute_key(channel, user), commit)
    if not removed:
        raise ApiError(404, "not_found", f"{user!r} is not muted in {channel!r}")
    chat.svc.log.info("user unmuted", channel=channel, user=user, by=caller.username)


@router.get("/{channel}/mutes", response_model=Mutes, responses=responses(403, 404), summary="Muted users")
async def list_mutes(channel: Channel, caller: CurrentIdentity, chat: Chat) -> dict[str, Any]:
    await moderated_room(chat, channel, caller)
    now = now_ms()
    async with chat.svc.session() as session:
        rows = (
            await session.execute(
                select(mutes).where(mutes.c.channel == channel).order_by(mutes.c.created_ms)
            )
        ).all()
    return {"mutes": [_mute_out(channel, r) for r in rows if not r.until_ms or r.until_ms > now]}
