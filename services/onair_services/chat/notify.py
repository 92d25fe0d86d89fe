"""Go-live notifications: an outbox in chat's database, published to each follower exactly once.

1. The projection ``chat.notify`` (``media.live_stream.status``) inserts one ``chat_golive`` row per
   ``open`` (key: the session id), in the same transaction as its Kafka offsets. A replayed batch
   finds the row there (``ON CONFLICT DO NOTHING``) and the runner drops replayed events anyway,
   so a go-live is recorded once. An ``open`` less than ``notify_cooldown_s`` after the channel's
   previous one is recorded as ``suppressed`` (an encoder that reconnects does not spam followers).
2. After the commit (and every ``relay_interval_s`` in every chat process, for rows a crashed
   process left) a process **claims** a pending row for a lease (a conditional ``UPDATE``: one
   claimant at a time), publishes ``{"type":"went_live", ...}`` to ``notify.user.<id>`` of every
   follower with ``Nats-Msg-Id: went_live:<session>:<user>``, and marks the row ``sent``.
3. A process that dies after publishing and before marking leaves the row pending; the lease runs
   out and another process publishes again. JetStream drops the repeats (same msg id, within the
   stream's duplicate window), so the ``NOTIFY`` stream holds each notification once, and viewers
   read their notifications from that stream. Rows still pending when the window could no longer
   cover a repeat are marked ``expired`` instead of being published late.

So: each (go-live, follower) notification is stored once, never twice; it is lost only if no chat
process runs for the whole duplicate window (10 minutes by default) after the go-live.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
from nats.js.api import Header
from sqlalchemy import and_, or_, select, update

from onair.clients import NatsClient
from onair.logging import get_logger
from onair.service import Service
from onair_services.chat import metrics
from onair_services.chat.models import follows, golive
from onair_services.chat.settings import ChatSettings
from onair_services.chat.streams import now_ms, user_subject

log = get_logger("onair.chat.notify")

LEASE_MS = 60_000
PAGE = 500


class Notifier:
    def __init__(self, svc: Service, nats: NatsClient, settings: ChatSettings) -> None:
        self.svc = svc
        self.nats = nats
        self.settings = settings
        self.process = settings.process_id
        # Publish no repeat the stream could not recognise: a row claimed this late (plus its
        # lease) still falls inside the duplicate window counted from the first publish.
        self.horizon_ms = int(settings.duplicate_window_s * 1000) - 2 * LEASE_MS

    async def publish_pending(self, session_ids: Sequence[str] | None = None) -> int:
        """Publish the pending go-lives (``session_ids``, or every one); notifications sent."""
        now = now_ms()
        async with self.svc.session() as session, session.begin():
            await session.execute(
                update(golive)
                .where(golive.c.state == "pending", golive.c.opened_ms < now - self.horizon_ms)
                .values(state="expired")
            )
            query = select(golive.c.session_id).where(golive.c.state == "pending")
            if session_ids is not None:
                query = query.where(golive.c.session_id.in_(list(session_ids)))
            pending = [r[0] for r in (await session.execute(query.order_by(golive.c.opened_ms))).all()]
        sent = 0
        for session_id in pending:
            sent += await self._publish_one(session_id)
        return sent

    async def _claim(self, session_id: str) -> dict[str, Any] | None:
        now = now_ms()
        async with self.svc.session() as session, session.begin():
            result = await session.execute(
                update(golive)
                .where(
                    golive.c.session_id == session_id,
                    golive.c.state == "pending",
                    or_(golive.c.claimed_until_ms.is_(None), golive.c.claimed_until_ms < now),
                )
                .values(claimed_by=self.process, claimed_until_ms=now + LEASE_MS)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = (
                await session.execute(
                    select(golive.c.channel, golive.c.title, golive.c.opened_ms).where(
                        golive.c.session_id == session_id
                    )
                )
            ).one()
        return {"channel": row[0], "title": row[1], "opened_ms": row[2], "until": now + LEASE_MS}

    async def _publish_one(self, session_id: str) -> int:
        claim = await self._claim(session_id)
        if claim is None:
            return 0  # another process has it, or it is done
        channel = claim["channel"]
        payload = orjson.dumps(
            {
                "type": "went_live",
                "id": session_id,
                "channel": channel,
                "title": claim["title"],
                "ts": claim["opened_ms"],
            }
        )
        sent = 0
        after = ""
        while True:
            async with self.svc.session() as session:
                users = [
                    r[0]
                    for r in (
                        await session.execute(
                            select(follows.c.user_id)
                            .where(follows.c.channel == channel, follows.c.user_id > after)
                            .order_by(follows.c.user_id)
                            .limit(PAGE)
                        )
                    ).all()
                ]
            if not users:
                break
            if now_ms() > claim["until"] - 5_000:  # the lease is running out: leave it to a retry
                log.warning("went_live lease ran out", session_id=session_id, sent=sent)
                return sent
            await asyncio.gather(*(self._send(user, session_id, payload) for user in users))
            sent += len(users)
            after = users[-1]
        async with self.svc.session() as session, session.begin():
            await session.execute(
                update(golive)
                .where(and_(golive.c.session_id == session_id, golive.c.claimed_by == self.process))
                .values(state="sent", sent_ms=now_ms(), notified=sent)
            )
        metrics.NOTIFICATIONS.inc(sent)
        log.info("went_live notified", channel=channel, session_id=session_id, followers=sent)
        return sent

    async def _send(self, user_id: str, session_id: str, payload: bytes) -> None:
        await self.nats.js_publish(
            user_subject(self.nats, user_id),
            payload,
            headers={Header.MSG_ID.value: f"went_live:{session_id}:{user_id}"},
        )

    async def relay_forever(self) -> None:
        """Publish what a crashed or slow process left pending (every ``relay_interval_s``)."""
        while True:
            await asyncio.sleep(self.settings.relay_interval_s)
            try:
                await self.publish_pending()
            except Exception as exc:  # the database or NATS is away: next round
                log.warning("went_live relay failed", error=repr(exc))
