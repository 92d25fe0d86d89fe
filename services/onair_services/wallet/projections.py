"""Projection ``wallet.users`` of ``auth.user.created``: who exists and who is a streamer.

The wallet answers "is there a channel X?" (a donation to an unknown channel is 404) from this
table of its own, never by asking auth. A channel id is its streamer's username.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from onair.logstream import Event, Projection, upsert
from onair.service import Service
from onair_services.wallet.models import users

TOPIC = "auth.user.created"


async def apply_users(batch: Sequence[Event], session: AsyncSession) -> None:
    by_name: dict[str, dict[str, object]] = {}  # a username belongs to one user: the newest wins
    for event in batch:
        data = event.data
        username = str(data["username"])
        roles = data.get("roles") or []
        by_name[username] = {
            "user_id": str(data["user_id"]),
            "username": username,
            "streamer": "streamer" in roles,
        }
    by_id = {str(r["user_id"]): r for r in by_name.values()}
    for row in by_id.values():
        await session.execute(
            delete(users).where(users.c.username == row["username"], users.c.user_id != row["user_id"])
        )
    await upsert(session, users, list(by_id.values()), ["user_id"])


def users_projection(svc: Service) -> Projection:
    return Projection(name="wallet.users", topics=[TOPIC], apply=apply_users)
