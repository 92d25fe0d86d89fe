"""liveapi's HTTP API under ``/channels``: create, read, change and re-key a channel.

Authorisation is here: a streamer (or admin) creates their own channel (id = their username);
only the owner or an admin reads the write-side view or changes it (403 for anyone else, 404 for
a channel that does not exist). A write commits, then logs its events and answers with their
positions (``positions`` in the body, the last one in ``X-Onair-Position``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Response

from onair.auth import Identity
from onair.auth.fastapi import CurrentIdentity, require_role
from onair.logstream import Position
from onair.service import ApiError, Service, responses, service_of
from onair_services.liveapi.events import WRITES, log_write
from onair_services.liveapi.schemas import (
    CHANNEL_PATTERN,
    ChannelOptions,
    ChannelPatch,
    ChannelView,
    ChannelWithKey,
    ChannelWritten,
    NewChannel,
)
from onair_services.liveapi.settings import LiveapiSettings
from onair_services.liveapi.store import (
    Channel,
    ChannelExists,
    ChannelNotFound,
    ChannelStore,
    Write,
    WriteConflict,
)

router = APIRouter(prefix="/channels", tags=["channels"])

POSITION_HEADER = "X-Onair-Position"
ChannelId = Annotated[str, Path(pattern=CHANNEL_PATTERN, description="The channel id (its owner's username)")]
_POSITION_DOC = {
    "headers": {
        POSITION_HEADER: {
            "description": "Position of the last event this write logged (topic:partition:offset)",
            "schema": {"type": "string"},
        }
    }
}


def _store(svc: Service) -> ChannelStore:
    store: ChannelStore = svc.state["store"]
    return store


def _settings(svc: Service) -> LiveapiSettings:
    settings: LiveapiSettings = svc.state["settings"]
    return settings


def view(channel: Channel) -> ChannelView:
    return ChannelView(
        id=channel.id,
        owner_id=channel.owner_id,
        title=channel.title,
        tags=channel.tags,
        options=ChannelOptions(**channel.options),
        key_fingerprint=channel.key_fingerprint,
        key_rotated_at=channel.key_rotated_at,
        version=channel.version,
        logged_version=channel.logged_version,
        created_at=channel.created_at,
        updated_at=channel.updated_at,
    )


def _may_change(caller: Identity, channel: Channel) -> bool:
    return caller.user_id == channel.owner_id or caller.has_role("admin")


async def _owned(svc: Service, caller: Identity, channel_id: str) -> Channel:
    channel = await _store(svc).get(channel_id)
    if channel is None:
        raise ApiError(404, "not_found", f"no channel {channel_id!r}")
    if not _may_change(caller, channel):
        raise ApiError(403, "forbidden", f"only the owner of {channel_id!r} (or an admin) may do this")
    return channel


async def _log(svc: Service, write: Write, response: Response) -> dict[str, str]:
    positions: dict[str, Position | None] = await log_write(
        svc, _store(svc), write, timeout_s=_settings(svc).event_ack_timeout_s
    )
    out = {name: str(pos) for name, pos in positions.items() if pos is not None}
    if out:
        response.headers[POSITION_HEADER] = list(out.values())[-1]
    return out


@router.post(
    "",
    status_code=201,
    summary="Create the caller's channel (id = the caller's username)",
    responses={**responses(409, s409="The caller already has a channel"), 201: _POSITION_DOC},
)
async def create_channel(
    response: Response,
    caller: Annotated[Identity, Depends(require_role("streamer", "admin"))],
    body: Annotated[NewChannel | None, Body()] = None,
    svc: Service = Depends(service_of),
) -> ChannelWithKey:
    """Creates the channel and returns its publish key, **shown this once only**. Logs the four
    initial events (publish_key, title, tags, options) with seq 1."""
    body = body or NewChannel()
    options: dict[str, Any] = body.options.model_dump()
    try:
        write = await _store(svc).create(
            caller.username, caller.user_id, body.title or caller.username, body.tags, options
        )
    except ChannelExists:
        raise ApiError(409, "exists", f"channel {caller.username!r} exists already") from None
    WRITES.labels("create").inc()
    svc.log.info("channel created", channel=write.channel.id, owner_id=write.channel.owner_id)
    positions = await _log(svc, write, response)
    response.headers["Cache-Control"] = "no-store"
    assert write.publish_key is not None
    return ChannelWithKey(channel=view(write.channel), publish_key=write.publish_key, positions=positions)


@router.get("/{channel}", summary="The write-side view of a channel", responses=responses(403, 404))
async def get_channel(
    channel: ChannelId, caller: CurrentIdentity, svc: Service = Depends(service_of)
) -> ChannelView:
    return view(await _owned(svc, caller, channel))


@router.patch(
    "/{channel}",
    summary="Change the title, tags and/or options",
    responses={**responses(403, 404, 409, s409="Too many concurrent writes; retry"), 200: _POSITION_DOC},
)
async def patch_channel(
    channel: ChannelId,
    body: ChannelPatch,
    response: Response,
    caller: CurrentIdentity,
    svc: Service = Depends(service_of),
) -> ChannelWritten:
    """Commits the change, then logs one event per changed field (``media.broad_info.title``,
    ``…tags``, ``…options``; seq = the channel's new version). A field equal to its current value
    is no change: no new version, no event."""
    await _owned(svc, caller, channel)
    try:
        write = await _store(svc).change(
            channel,
            title=body.title,
            tags=body.tags,
            options=body.options.model_dump(exclude_unset=True) if body.options is not None else None,
        )
    except ChannelNotFound:
        raise ApiError(404, "not_found", f"no channel {channel!r}") from None
    except WriteConflict:
        raise ApiError(409, "conflict", f"too many concurrent writes to {channel!r}; retry") from None
    if write.changed:
        WRITES.labels("change").inc()
    return ChannelWritten(channel=view(write.channel), positions=await _log(svc, write, response))


@router.post(
    "/{channel}/publish-key",
    summary="Rotate the publish key (the old one stops working)",
    responses={**responses(403, 404, 409, s409="Too many concurrent writes; retry"), 200: _POSITION_DOC},
)
async def rotate_key(
    channel: ChannelId, response: Response, caller: CurrentIdentity, svc: Service = Depends(service_of)
) -> ChannelWithKey:
    """A new key, **shown this once only**; logs ``media.broad_info.publish_key`` with its SHA-256.
    Media refuses the old key once its projection has applied the event (read the position)."""
    await _owned(svc, caller, channel)
    try:
        write = await _store(svc).rotate_key(channel)
    except ChannelNotFound:
        raise ApiError(404, "not_found", f"no channel {channel!r}") from None
    except WriteConflict:
        raise ApiError(409, "conflict", f"too many concurrent writes to {channel!r}; retry") from None
    WRITES.labels("rotate_key").inc()
    svc.log.info("publish key rotated", channel=channel, by=caller.user_id)
    positions = await _log(svc, write, response)
    response.headers["Cache-Control"] = "no-store"
    assert write.publish_key is not None
    return ChannelWithKey(channel=view(write.channel), publish_key=write.publish_key, positions=positions)
