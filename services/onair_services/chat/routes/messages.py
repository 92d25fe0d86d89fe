"""Posting into a room, and what the BFF reads: ``/recent`` and ``/stats``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query

from onair.auth.fastapi import CurrentIdentity
from onair.fanout.bridge import FanoutMessage
from onair.service import ApiError, responses
from onair_services.chat import metrics
from onair_services.chat.runtime import ChatRuntime, chat_of_request
from onair_services.chat.schemas import Channel, ChatEvent, NewMessage, Recent, Stats
from onair_services.chat.text import TextError, clean

router = APIRouter(prefix="/chat", tags=["chat"])
Chat = Annotated[ChatRuntime, Depends(chat_of_request)]


def _refuse(status: int, error: str, detail: str, reason: str, **extra: Any) -> ApiError:
    metrics.REFUSED.labels(reason).inc()
    return ApiError(status, error, detail, **extra)


@router.post(
    "/{channel}/messages",
    status_code=201,
    response_model=ChatEvent,
    responses=responses(403, 404, 429),
    summary="Post a message into the room",
)
async def post_message(
    channel: Channel, body: NewMessage, caller: CurrentIdentity, chat: Chat
) -> dict[str, Any]:
    """Rules: the text (see the body), not muted here (403 ``muted``), in a ``followers`` room only
    followers (403 ``followers_only``), and the limits (429 with ``Retry-After``): per user, per
    room, and in a ``slow`` room one message per ``ONAIR_CHAT_SLOW_MODE_S`` per user. The
    channel's owner and admins are exempt from the room rules. Answers the event as published."""
    s = chat.settings
    room = await chat.rooms.require(channel)
    try:
        text = clean(body.text, max_chars=s.max_chars, max_lines=s.max_lines)
    except TextError as exc:
        metrics.REFUSED.labels("invalid").inc()
        raise ApiError(
            422,
            "invalid_request",
            f"body.text: {exc}",
            fields=[{"field": "body.text", "message": str(exc)}],
        ) from None
    moderator = room.moderated_by(caller)
    if not moderator:
        until = await chat.rooms.muted_until(channel, caller.username)
        if until is not None:
            raise _refuse(
                403,
                "muted",
                f"you are muted in {channel!r}" + (" until lifted" if until == 0 else ""),
                "muted",
                until_ms=until or None,
            )
        if room.chat_mode == "followers" and not await chat.rooms.follows(caller.user_id, channel):
            raise _refuse(
                403, "followers_only", f"only followers of {channel!r} may post here", "followers_only"
            )
    slow = s.slow_mode_s if room.chat_mode == "slow" and not moderator else 0.0
    decision = await chat.limiter.take(channel, caller.user_id, slow_s=slow, room=not moderator)
    if not decision.allowed:
        what = {"user": "you are posting too fast", "room": "this room is too busy", "slow": "slow mode"}
        raise _refuse(
            429,
            "rate_limited",
            f"{what[decision.limiter]}; retry in {decision.retry_after_s:.1f} s",
            decision.limiter,
            headers={"Retry-After": decision.retry_after_header},
            limiter=decision.limiter,
        )
    payload = await chat.publisher.publish(
        channel, {"type": "message", "user": caller.username, "user_id": caller.user_id, "text": text}
    )
    metrics.POSTED.labels("message").inc()
    return payload


def _newest_first(flog: Any) -> Iterator[dict[str, Any]]:
    """The room log's events, newest first (parsed as needed: callers stop early)."""
    for seq in range(flog.head - 1, flog.tail - 1, -1):
        item = flog.entry(seq)
        if isinstance(item, FanoutMessage):
            yield orjson.loads(item.data)


@router.get("/{channel}/recent", response_model=Recent, responses=responses(404), summary="Recent messages")
async def recent(
    channel: Channel,
    chat: Chat,
    limit: Annotated[int, Query(ge=1, le=200, description="How many messages (newest)")] = 50,
) -> dict[str, Any]:
    """The newest ``limit`` messages and donations, oldest first, without the deleted ones."""
    await chat.rooms.require(channel)
    flog = await chat.feeds.room(channel)
    chat.feeds.touch(flog)
    deleted: set[int] = set()  # a delete comes after its message: seen first going backwards
    shown: list[dict[str, Any]] = []
    last_n = 0
    for event in _newest_first(flog):
        last_n = last_n or event["n"]
        if event.get("type") == "delete":
            deleted.add(event["id"])
        elif event.get("type") in ("message", "donation") and event["id"] not in deleted:
            shown.append(event)
            if len(shown) == limit:
                break
    shown.reverse()
    return {"channel": channel, "messages": shown, "last_n": last_n}


@router.get("/{channel}/stats", response_model=Stats, responses=responses(404), summary="Room numbers")
async def stats(channel: Channel, chat: Chat) -> dict[str, Any]:
    """Viewers here and in every chat process, and messages per minute."""
    room = await chat.rooms.require(channel)
    flog = await chat.feeds.room(channel)
    chat.feeds.touch(flog)
    since = int(time.time() * 1000) - 60_000
    per_min = last_n = 0
    for event in _newest_first(flog):
        last_n = last_n or event["n"]
        if event.get("ts", 0) < since:
            break
        per_min += event.get("type") == "message"
    total, processes = await chat.viewers.total(channel)
    return {
        "channel": channel,
        "live": room.live,
        "chat_mode": room.chat_mode,
        "viewers_here": chat.viewers.here(channel),
        "viewers_total": total,
        "processes": processes,
        "messages_per_min": per_min,
        "last_n": last_n,
    }
