"""Donation announcements from the wallet, posted into the room once.

The wallet's donation saga publishes ``{"transfer_id","donor","channel","amount","message","ts"}``
on ``<prefix>.wallet.donation.<channel>`` (JetStream stream ``WALLET``, the wallet's). Every chat
process pulls from one durable consumer (``ONAIR_CHAT_DONATION_CONSUMER``), so each announcement
goes to one process; it is posted into the room as ``{"type":"donation", "user": <donor>,
"amount", "text": <message>, "transfer_id"}`` and acknowledged
after that. A process that dies before acknowledging gets it redelivered to another one; the post
carries ``Nats-Msg-Id: donation:<transfer_id>``, so the room's stream keeps it once. A malformed
announcement, or one for a room that does not exist, is terminated (no redelivery) and logged.
The consumer waits for the wallet's stream to exist; chat works without it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onair.clients import NatsClient
from onair.logging import get_logger
from onair_services.chat import metrics
from onair_services.chat.rooms import RoomDirectory
from onair_services.chat.settings import ChatSettings
from onair_services.chat.streams import RoomPublisher
from onair_services.chat.text import TextError, clean

log = get_logger("onair.chat.donations")


class Announcement(BaseModel):
    model_config = ConfigDict(extra="ignore")

    transfer_id: str = Field(min_length=1, max_length=100)
    donor: str = Field(min_length=1, max_length=64)
    channel: str = Field(pattern=r"^[a-z0-9_]{3,32}$")
    amount: int = Field(gt=0)
    message: str | None = Field(default=None, max_length=4000)


class Donations:
    def __init__(
        self, nats: NatsClient, publisher: RoomPublisher, rooms: RoomDirectory, settings: ChatSettings
    ) -> None:
        self.nats = nats
        self.publisher = publisher
        self.rooms = rooms
        self.settings = settings
        self.subject = nats.subject("wallet", "donation", ">")

    async def run_forever(self) -> None:
        waiting_logged = False
        while True:
            try:
                psub = await self._bind()
            except NotFoundError:
                if not waiting_logged:
                    log.info("donations: waiting for the wallet's stream", subject=self.subject)
                    waiting_logged = True
                await asyncio.sleep(2)
                continue
            except Exception as exc:  # NATS away: try again
                log.warning("donations: cannot bind the consumer", error=repr(exc))
                await asyncio.sleep(2)
                continue
            log.info("donations: consuming", subject=self.subject, consumer=self.settings.donation_consumer)
            try:
                await self._consume(psub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("donations: consumer failed; binding again", error=repr(exc))
                await asyncio.sleep(1)
            finally:  # (also when cancelled at shutdown: the connection then drains at once)
                with contextlib.suppress(Exception):
                    await asyncio.shield(psub.unsubscribe())

    async def _bind(self) -> Any:
        js = self.nats.jetstream()
        stream = await js.find_stream_name_by_subject(self.subject)
        config = ConsumerConfig(
            durable_name=self.settings.donation_consumer,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=self.subject,
        )
        return await js.pull_subscribe(
            self.subject, durable=self.settings.donation_consumer, stream=stream, config=config
        )

    async def _consume(self, psub: Any) -> None:
        while True:
            try:
                msgs = await psub.fetch(16, timeout=5)
            except (NatsTimeoutError, TimeoutError):
                continue
            for msg in msgs:
                await self.handle(msg)

    async def handle(self, msg: Msg) -> None:
        try:
            ann = Announcement.model_validate(orjson.loads(msg.data))
            if not msg.subject.endswith(f".{ann.channel}"):
                raise ValueError(f"channel {ann.channel!r} does not match the subject {msg.subject!r}")
            text = None
            if ann.message:
                try:
                    text = clean(
                        ann.message, max_chars=self.settings.max_chars, max_lines=self.settings.max_lines
                    )
                except TextError:
                    text = None
        except (ValueError, ValidationError, orjson.JSONDecodeError) as exc:
            log.warning(
                "donations: malformed announcement dropped", subject=msg.subject, error=str(exc)[:300]
            )
            metrics.DONATIONS.labels("malformed").inc()
            await msg.term()
            return
        if await self.rooms.get(ann.channel) is None:
            log.warning("donations: no such room; dropped", channel=ann.channel, transfer_id=ann.transfer_id)
            metrics.DONATIONS.labels("unknown_room").inc()
            await msg.term()
            return
        try:
            await self.publisher.publish(
                ann.channel,
                {
                    "type": "donation",
                    "transfer_id": ann.transfer_id,
                    "user": ann.donor,
                    "amount": ann.amount,
                    "text": text,
                },
                msg_id=f"donation:{ann.transfer_id}",
            )
        except Exception as exc:
            log.warning(
                "donations: posting failed; redelivery later", transfer_id=ann.transfer_id, error=repr(exc)
            )
            await msg.nak(delay=1)
            return
        metrics.DONATIONS.labels("posted").inc()
        metrics.POSTED.labels("donation").inc()
        await msg.ack()
