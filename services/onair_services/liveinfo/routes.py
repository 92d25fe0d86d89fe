"""liveinfo's HTTP API: ``GET /live``, ``/live/ranking``, ``/live/{channel}``, ``/live/{channel}/events``.

Reads are answered through the cached reader (eventually consistent: a change is visible after
the projection's commit and the invalidation). A read with a position (``?position=`` or the
``X-Onair-Position`` header, as a write answered it) first waits, bounded, until the projection
that reads that topic has applied it, then is answered from the database: it can never see a
value older than that write. 503 ``not_yet_applied`` after the bound; 409 ``unknown_position``
for a topic liveinfo does not read.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.responses import Response

from onair.fanout.bridge import FanoutMessage
from onair.fanout.sse import sse_response
from onair.logstream import Position, UnknownPosition, wait_for_position
from onair.service import ApiError, Service, responses, service_of
from onair_services.liveinfo import metrics
from onair_services.liveinfo.projections import CHANNEL_TOPICS, CHANNELS, VIEWER_TOPICS, VIEWERS
from onair_services.liveinfo.readmodel import VERSION_HEADER, LiveReadModel
from onair_services.liveinfo.settings import LiveinfoSettings
from onair_services.liveinfo.views import ChannelView, LivePage, Ranking
from onair_services.media_events import CHANNEL_PATTERN

router = APIRouter(prefix="/live", tags=["live"])

POSITION_PATTERN = r"^[A-Za-z0-9._-]+:[0-9]{1,9}:[0-9]{1,18}$"
POSITION_DOC = (
    "Read-your-writes: a position a write answered (`<topic>:<partition>:<offset>`); the read waits "
    "until liveinfo applied it (503 after the bound, 409 for a topic liveinfo does not read)."
)

ChannelId = Annotated[str, Path(pattern=CHANNEL_PATTERN, description="Channel id (the streamer's username)")]
PositionQuery = Annotated[
    str | None, Query(pattern=POSITION_PATTERN, max_length=300, description=POSITION_DOC)
]
PositionHeader = Annotated[
    str | None,
    Header(alias="X-Onair-Position", pattern=POSITION_PATTERN, max_length=300, description=POSITION_DOC),
]


async def read_model(svc: Service = Depends(service_of)) -> LiveReadModel:
    model: LiveReadModel = svc.state["live"]
    return model


Model = Annotated[LiveReadModel, Depends(read_model)]


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


async def _applied(model: LiveReadModel, query: str | None, header: str | None) -> bool:
    """Wait for the position of the request, if it has one; True when it had one."""
    given = query or header
    if given is None:
        return False
    pos = Position.parse(given)
    svc = model.svc
    topic_of = svc.kafka.topic if svc.kafka is not None else (lambda t: t)
    if pos.topic in {topic_of(t) for t in CHANNEL_TOPICS}:
        projection = CHANNELS
    elif pos.topic in {topic_of(t) for t in VIEWER_TOPICS}:
        projection = VIEWERS
    else:
        raise UnknownPosition(given, f"liveinfo does not read topic {pos.topic}")
    assert svc.engine is not None
    await wait_for_position(
        svc.engine,
        projection,
        pos,
        timeout_s=model.settings.position_wait_s,
        runner=svc.runners.get(projection),
    )
    return True


def normalize_tag(tag: str) -> str:
    """As liveapi normalises tags: NFC, lowercased, trimmed, inner whitespace runs -> ``-``."""
    return "-".join(unicodedata.normalize("NFC", tag).lower().split())


@router.get(
    "",
    response_model=LivePage,
    summary="Channels on air now (public ones), newest first",
    responses=responses(409),
)
async def on_air(
    model: Model,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    tag: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Only channels with this tag")
    ] = None,
    position: PositionQuery = None,
    x_onair_position: PositionHeader = None,
) -> Response:
    if await _applied(model, position, x_onair_position):
        metrics.READ["onair"].inc()
        items = await model.load_onair()
    else:
        items = await model.onair()
    if tag is not None:
        wanted = normalize_tag(tag)
        items = [item for item in items if wanted in item["tags"]]
    start = (page - 1) * limit
    return _json({"items": items[start : start + limit], "page": page, "limit": limit, "total": len(items)})


@router.get(
    "/ranking",
    response_model=Ranking,
    summary="The most watched channels on air (viewers of every chat process)",
    responses=responses(409),
)
async def ranking(
    model: Model,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most ONAIR_LIVEINFO_RANKING_SIZE")] = 10,
    position: PositionQuery = None,
    x_onair_position: PositionHeader = None,
) -> Response:
    if await _applied(model, position, x_onair_position):
        metrics.READ["ranking"].inc()
        items = await model.load_ranking_from_db()
    else:
        items = await model.ranking()
    return _json({"items": items[:limit]})


@router.get(
    "/{channel}",
    response_model=ChannelView,
    summary="One channel's live view (hidden channels too: see `visibility`)",
    responses=responses(404, 409),
)
async def channel_view(
    model: Model, channel: ChannelId, position: PositionQuery = None, x_onair_position: PositionHeader = None
) -> Response:
    if await _applied(model, position, x_onair_position):
        metrics.READ["channel"].inc()
        view = await model.load_channel(channel)
    else:
        view = await model.channel(channel)
    if view is None:
        raise ApiError(404, "not_found", f"no channel {channel!r}")
    return _json(view)


@router.get(
    "/{channel}/events",
    summary="The channel's view each time it changes (Server-Sent Events; the first is the current view)",
    response_class=Response,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "`data:` lines carrying a ChannelView as JSON, newest version last; "
            "`event: gap` when updates were lost (re-read the channel)",
        },
        **responses(404),
    },
)
async def channel_events(model: Model, channel: ChannelId) -> Response:
    metrics.READ["events"].inc()
    if await model.channel(channel) is None:  # (cached) no subscription for unknown channels
        raise ApiError(404, "not_found", f"no channel {channel!r}")
    # Subscribe first, then read the current view from the database: nothing can fall between
    # the two. Updates older than what this connection was last sent (by version) are skipped.
    sub = await model.bridge.subscribe(model.subject(channel))
    try:
        view = await model.load_channel(channel, view="events")
    except BaseException:
        sub.close()
        raise
    if view is None:  # pragma: no cover - channels are never deleted
        sub.close()
        raise ApiError(404, "not_found", f"no channel {channel!r}")
    sent = [int(view["version"])]

    def newer(message: FanoutMessage) -> bool:
        try:
            version = int((message.headers or {}).get(VERSION_HEADER, "0"))
        except ValueError:
            return False
        if version <= sent[0]:
            return False
        sent[0] = version
        return True

    settings: LiveinfoSettings = model.settings
    return sse_response(
        sub,
        initial=[b"data: " + orjson.dumps(view) + b"\n\n"],
        keep=newer,
        heartbeat_s=settings.sse_heartbeat_s,
        on_close=lambda: model.stream_closed(channel),
    )
