"""``GET /notify/stream``: the caller's own notifications (``went_live``), as Server-Sent Events.

Fed from the ``NOTIFY`` stream through the same fan-out as rooms (one log per user per process):
on connecting, the last ``notify_history`` notifications still retained, then new ones. ``id:`` is
the notification's stream sequence; with ``Last-Event-ID`` only later ones are sent.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from starlette.responses import Response

from onair.auth.fastapi import CurrentIdentity
from onair.fanout.bridge import FanoutMessage
from onair.fanout.sse import SSEStream
from onair_services.chat.resume import notify_sse_frame, sse_gap
from onair_services.chat.routes.streams import EventStream, last_seen
from onair_services.chat.runtime import ChatRuntime, chat_of_request

router = APIRouter(prefix="/notify", tags=["notifications"])
Chat = Annotated[ChatRuntime, Depends(chat_of_request)]


@router.get(
    "/stream",
    response_class=EventStream,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Notifications",
        }
    },
    summary="My notifications (Server-Sent Events)",
)
async def notify_stream(
    caller: CurrentIdentity,
    chat: Chat,
    last_event_id: Annotated[int | None, Query(ge=0, description="Only notifications after this id")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """``data: {"type":"went_live","id":<session>,"channel","title","ts"}`` per notification."""
    seen = last_seen(last_event_id, last_event_id_header)
    flog = await chat.feeds.user(caller.user_id)
    cursor = max(flog.tail, flog.head - chat.settings.notify_history)
    if seen is not None:
        cursor = flog.head
        for seq, item in flog.retained():
            if isinstance(item, FanoutMessage) and (item.stream_seq or 0) > seen:
                cursor = seq
                break
    sub = flog.subscribe(start=cursor)
    chat.viewers.by_transport["notify"] += 1

    def closed() -> None:
        chat.viewers.by_transport["notify"] -= 1
        chat.feeds.touch(flog)

    return EventStream(
        SSEStream(
            sub,
            encode=notify_sse_frame,
            encode_gap=sse_gap,
            heartbeat_s=chat.settings.heartbeat_s,
            on_close=closed,
        )
    )
