"""Donation announcements on JetStream: ``<prefix>.wallet.donation.<channel>`` in stream ``WALLET``.

The wallet creates the stream if it does not exist (chat's durable consumer reads it and posts a
highlighted message in the room). Each announcement carries ``Nats-Msg-Id: <donation id>``, so a
saga that publishes again after a crash is dropped as a duplicate by JetStream (within the
stream's duplicate window, 2 minutes; chat also ignores a ``donation_id`` it already posted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson
from nats.js.errors import NotFoundError

from onair.clients import NatsClient
from onair.logging import get_logger

log = get_logger("onair.wallet.announcer")

DUPLICATE_WINDOW_S = 120.0


class Announcer:
    def __init__(
        self, nats: NatsClient, *, stream: str, max_age_s: int, timeout_s: float, replicas: int = 1
    ) -> None:
        self.nats = nats
        self.stream = stream
        self.max_age_s = max_age_s
        self.replicas = replicas
        self.timeout_s = timeout_s
        self._ready = False
        self._lock = asyncio.Lock()

    def subject(self, channel: str) -> str:
        return self.nats.subject("wallet", "donation", channel)

    async def ensure_stream(self) -> None:
        if self._ready:
            return
        async with self._lock:
            if self._ready:
                return
            js = self.nats.jetstream()
            try:
                await js.stream_info(self.stream)
            except NotFoundError:
                await js.add_stream(
                    name=self.stream,
                    subjects=[self.nats.subject("wallet", "donation", ">")],
                    max_age=float(self.max_age_s),
                    duplicate_window=DUPLICATE_WINDOW_S,
                    num_replicas=self.replicas,
                )
                log.info("jetstream stream created", stream=self.stream)
            self._ready = True

    async def announce(self, donation_id: str, channel: str, payload: Mapping[str, Any]) -> int:
        """Publish and wait for JetStream's ack; returns the stream sequence."""
        async with asyncio.timeout(self.timeout_s):
            await self.ensure_stream()
            ack = await self.nats.js_publish(
                self.subject(channel),
                orjson.dumps(dict(payload)),
                headers={"Nats-Msg-Id": donation_id},
                stream=self.stream,
            )
        return int(ack.seq)
