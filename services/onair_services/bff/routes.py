"""The BFF's HTTP API: the composed data of a page, per client (``/bff/web/...``, ``/bff/mobile/...``).

The caller's identity is optional: without one the page is the anonymous one (shared, briefly
cached); with one it adds the caller's balance and follow state. A part whose upstream failed is
``null`` and named in ``degraded``; the page fails only when liveinfo does (404 for an unknown
channel, 503 when liveinfo is down, 504 when it is slower than its deadline).
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from onair.auth.fastapi import MaybeIdentity
from onair.logging import current_request_id
from onair.service import ApiError, Service, responses, service_of
from onair_services.bff import metrics
from onair_services.bff.compose import Composed, Composer, home_page, mobile_live, web_live
from onair_services.bff.models import HomePage, MobileLivePage, WebLivePage
from onair_services.bff.settings import BffSettings
from onair_services.bff.upstreams import Caller, UpstreamError

router = APIRouter(prefix="/bff", tags=["bff"])

ChannelId = Annotated[
    str, Path(pattern=r"^[a-z0-9_]{3,32}$", description="Channel id (the streamer's username)")
]
LIVE_ERRORS = responses(
    404,
    503,
    504,
    s404="liveinfo does not know the channel",
    s503="liveinfo is unavailable (there is no page without the channel)",
    s504="liveinfo did not answer within its deadline",
)


def composer_of(svc: Service = Depends(service_of)) -> Composer:
    composer: Composer = svc.state["composer"]
    return composer


ComposerDep = Annotated[Composer, Depends(composer_of)]


def _caller(request: Request, signed_in: bool) -> Caller:
    identity = request.headers.get("x-onair-identity") if signed_in else None
    return Caller(identity=identity, request_id=current_request_id())


def _json(body: object, *, private: bool) -> Response:
    cache = "private, no-store" if private else "public, max-age=1"
    return Response(orjson.dumps(body), media_type="application/json", headers={"Cache-Control": cache})


async def _live(composer: Composer, channel: str, caller: Caller, page: str) -> Composed:
    try:
        composed = await composer.live(channel, caller)
    except UpstreamError as exc:
        if exc.kind == "not_found":
            raise ApiError(404, "not_found", f"no channel {channel!r}") from None
        status, code = (504, "upstream_timeout") if exc.kind == "timeout" else (503, "upstream_unavailable")
        raise ApiError(
            status,
            code,
            f"the channel's live info is unavailable ({exc.detail}); retry shortly",
            headers={"Retry-After": "1"},
            upstream=exc.upstream,
        ) from None
    for part in composed.degraded:
        metrics.DEGRADED.labels(page, part).inc()
    return composed


@router.get(
    "/web/live/{channel}",
    response_model=WebLivePage,
    responses=LIVE_ERRORS,
    summary="The channel page's data for the web: live info, chat, donors, related channels (+ the caller's)",
)
async def web_live_page(
    channel: ChannelId, request: Request, caller: MaybeIdentity, composer: ComposerDep
) -> Response:
    signed_in = caller is not None
    composed = await _live(composer, channel, _caller(request, signed_in), "web_live")
    settings: BffSettings = composer.s
    return _json(web_live(composed, settings, signed_in=signed_in), private=signed_in)


@router.get(
    "/mobile/live/{channel}",
    response_model=MobileLivePage,
    responses=LIVE_ERRORS,
    summary="The channel page's data for phones: the web page's, trimmed (docs/bff.md)",
)
async def mobile_live_page(
    channel: ChannelId, request: Request, caller: MaybeIdentity, composer: ComposerDep
) -> Response:
    signed_in = caller is not None
    composed = await _live(composer, channel, _caller(request, signed_in), "mobile_live")
    return _json(mobile_live(composed, composer.s, signed_in=signed_in), private=signed_in)


@router.get(
    "/web/home",
    response_model=HomePage,
    summary="The home page's data: channels on air now (with viewers) and the popularity ranking",
)
async def web_home(request: Request, caller: MaybeIdentity, composer: ComposerDep) -> Response:
    composed = await composer.home(_caller(request, False))
    for part in composed.degraded:
        metrics.DEGRADED.labels("home", part).inc()
    return _json(home_page(composed), private=False)
