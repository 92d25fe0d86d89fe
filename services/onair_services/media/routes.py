"""media's owner routes under ``/media``: the built-in simulated encoder and the current session.

Only the channel's owner (by the ``owner_id`` of media's own publish-key projection) or an admin;
404 for a channel media does not know (yet). The simulated encoder goes through the same session
logic as a WebSocket encoder (one live session per channel, leases, events) with no connection.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, Field

from onair.auth import Identity
from onair.auth.fastapi import CurrentIdentity
from onair.service import ApiError, Service, responses, service_of
from onair_services.media.ladder import Rendition, Source
from onair_services.media.live import Refused, SessionManager
from onair_services.media.store import SessionRow, ms_to_datetime

router = APIRouter(prefix="/media", tags=["media"])

ChannelId = Annotated[str, Path(pattern=r"^[a-z0-9_]{3,32}$", description="The channel id")]


class SessionView(BaseModel):
    id: str
    channel: str
    kind: str = Field(description="encoder (over /ingest) or simulated (built in)")
    state: str = Field(description="open or closed")
    source: Source
    renditions: list[Rendition]
    opened_at: datetime
    lease_expires_at: datetime
    closed_at: datetime | None = None
    close_reason: str | None = None


class ChannelSession(BaseModel):
    channel: str
    live: bool
    session: SessionView | None = Field(description="The live session, else the most recent one (or none)")


def _manager(svc: Service) -> SessionManager:
    manager: SessionManager = svc.state["sessions"]
    return manager


def view(row: SessionRow) -> SessionView:
    return SessionView(
        id=row.id,
        channel=row.channel,
        kind=row.kind,
        state=row.state,
        source=Source(**row.source),
        renditions=[Rendition(**r) for r in row.renditions],
        opened_at=ms_to_datetime(row.opened_ms),
        lease_expires_at=ms_to_datetime(row.lease_expires_ms),
        closed_at=ms_to_datetime(row.closed_ms) if row.closed_ms is not None else None,
        close_reason=row.close_reason,
    )


async def _authorise(manager: SessionManager, caller: Identity, channel: str) -> None:
    key = await manager.store.publish_key(channel)
    if key is None:
        raise ApiError(404, "not_found", f"no channel {channel!r} (or media has not heard of it yet)")
    if key.owner_id != caller.user_id and not caller.has_role("admin"):
        raise ApiError(403, "forbidden", f"only the owner of {channel!r} (or an admin) may do this")


@router.post(
    "/channels/{channel}/simulate",
    status_code=201,
    summary="Start the built-in simulated encoder (the channel goes live)",
    responses=responses(403, 404, 409, s409="The channel is live already"),
)
async def start_simulated(
    channel: ChannelId,
    caller: CurrentIdentity,
    source: Annotated[Source | None, Body(description="The simulated source (default 1080p60 h264)")] = None,
    svc: Service = Depends(service_of),
) -> SessionView:
    manager = _manager(svc)
    await _authorise(manager, caller, channel)
    try:
        session = await manager.open(channel, source or Source(), kind="simulated")
    except Refused as refused:
        raise ApiError(409, "already_live", refused.reason) from None
    row = await manager.store.session(session.id)
    if row is None:  # closed in the meantime (e.g. stopped from elsewhere)
        raise ApiError(409, "already_live", "the session ended while starting; try again")
    return view(row)


@router.delete(
    "/channels/{channel}/simulate",
    summary="Stop the simulated encoder (the channel goes off air: close, reason 'stopped')",
    responses=responses(
        403,
        404,
        409,
        s404="No such channel, or it is not live",
        s409="The live session is a real encoder's (it ends when the encoder disconnects)",
    ),
)
async def stop_simulated(
    channel: ChannelId, caller: CurrentIdentity, svc: Service = Depends(service_of)
) -> SessionView:
    manager = _manager(svc)
    await _authorise(manager, caller, channel)
    live = await manager.store.live_session(channel)
    if live is None:
        raise ApiError(404, "not_live", f"{channel!r} is not live")
    if live.kind != "simulated":
        raise ApiError(409, "not_simulated", f"{channel!r} is live from a real encoder; stop the encoder")
    await manager.close(live.id, "stopped")
    row = await manager.store.session(live.id)
    assert row is not None
    return view(row)


@router.get(
    "/channels/{channel}/session",
    summary="The channel's live session (else its most recent one)",
    responses=responses(403, 404),
)
async def current_session(
    channel: ChannelId, caller: CurrentIdentity, svc: Service = Depends(service_of)
) -> ChannelSession:
    manager = _manager(svc)
    await _authorise(manager, caller, channel)
    row = await manager.store.last_session(channel)
    return ChannelSession(
        channel=channel,
        live=row is not None and row.state == "open",
        session=view(row) if row is not None else None,
    )
