"""What chat knows about a room (from its own projection ``chat.rooms``), who moderates it, and who
is muted in it: reads through the platform's cached reader (near cache, Valkey, database).

A room is a channel that liveapi has logged; chat never asks another service. Room views and mutes
are read on every post and every stream that opens, so they come from the process's near cache;
a change (a projection commit, a mute) writes a tombstone to Valkey, which tells every chat
process to drop its copy (client-side caching with invalidation, docs/cache.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from onair.auth import Identity
from onair.cache import CachedReader
from onair.clients import ValkeyClient
from onair.service import ApiError, Service
from onair_services.chat.models import follows, mutes, rooms
from onair_services.chat.streams import now_ms

CHAT_MODES = ("open", "followers", "slow")


@dataclass(frozen=True)
class Room:
    channel: str
    owner_id: str | None
    chat_mode: str
    title: str
    live: bool

    def moderated_by(self, caller: Identity | None) -> bool:
        """The channel's owner (channel id == their username, or their user id as logged) or an admin."""
        if caller is None:
            return False
        return (
            caller.username == self.channel
            or (self.owner_id is not None and caller.user_id == self.owner_id)
            or caller.has_role("admin")
        )


class RoomDirectory:
    """Rooms, mutes and follows as chat's routes need them."""

    def __init__(self, svc: Service, room_reader: CachedReader, mute_reader: CachedReader) -> None:
        self.svc = svc
        assert svc.valkey is not None
        self.valkey: ValkeyClient = svc.valkey
        self.room_reader = room_reader
        self.mute_reader = mute_reader

    # -- rooms -----------------------------------------------------------------------------------
    def room_key(self, channel: str) -> str:
        return self.valkey.key("chat", "room", channel)

    async def get(self, channel: str) -> Room | None:
        async def load() -> dict[str, Any] | None:
            async with self.svc.session() as session:
                row = (
                    await session.execute(
                        select(rooms.c.owner_id, rooms.c.chat_mode, rooms.c.title, rooms.c.live).where(
                            rooms.c.channel == channel
                        )
                    )
                ).first()
            if row is None:
                return None
            return {"owner_id": row[0], "chat_mode": row[1], "title": row[2], "live": bool(row[3])}

        value = await self.room_reader.get(self.room_key(channel), load)
        if value is None:
            return None
        mode = value["chat_mode"] if value["chat_mode"] in CHAT_MODES else "open"
        return Room(channel, value["owner_id"], mode, value["title"], value["live"])

    async def require(self, channel: str) -> Room:
        room = await self.get(channel)
        if room is None:
            raise ApiError(404, "not_found", f"no chat room {channel!r} (no such channel)")
        return room

    async def changed(self, channels: set[str]) -> None:
        """After a projection commit: every process drops its copy of these rooms."""
        for channel in channels:
            await self.room_reader.invalidate(self.room_key(channel))

    # -- mutes -----------------------------------------------------------------------------------
    def mute_key(self, channel: str, username: str) -> str:
        return self.valkey.key("chat", "mute", channel, username)

    async def muted_until(self, channel: str, username: str) -> int | None:
        """None when not muted, else the end of the mute (epoch ms; 0 = until lifted)."""

        async def load() -> dict[str, Any] | None:
            async with self.svc.session() as session:
                row = (
                    await session.execute(
                        select(mutes.c.until_ms).where(
                            mutes.c.channel == channel, mutes.c.username == username
                        )
                    )
                ).first()
            return None if row is None else {"until_ms": row[0] or 0}

        value = await self.mute_reader.get(self.mute_key(channel, username), load)
        if value is None:
            return None
        until = int(value["until_ms"])
        if until and until <= now_ms():
            return None
        return until

    # -- follows ---------------------------------------------------------------------------------
    async def follows(self, user_id: str, channel: str) -> bool:
        async with self.svc.session() as session:
            row = (
                await session.execute(
                    select(follows.c.channel).where(
                        follows.c.user_id == user_id, follows.c.channel == channel
                    )
                )
            ).first()
        return row is not None
