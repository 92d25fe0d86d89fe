"""The room and user logs of this process: one JetStream-fed :class:`~onair.fanout.FanoutLog` per
room (and per user stream) that has readers here, released when nobody has read it for a while.

A room log is fed with everything the stream retains for the room (``room_retention`` events) and
sized a little larger, so it always holds what a reconnecting viewer may ask for; joiners read
its last ``history`` events. A user's notification log is fed with the last ``notify_history``.
The fan-out itself (one NATS consumer per room per process, a cursor per viewer, encodings shared
by every connection) is :mod:`onair.fanout`'s.
"""

from __future__ import annotations

import time

from onair.clients import NatsClient
from onair.fanout import FanoutLog
from onair.fanout.bridge import FanoutBridge, FanoutMessage
from onair_services.chat.settings import ChatSettings
from onair_services.chat.streams import room_subject, user_subject

#: Room log slots beyond the stream's retention (gap markers, events arriving while one is trimmed).
ROOM_SLACK = 64


class Feeds:
    def __init__(self, nats: NatsClient, bridge: FanoutBridge, settings: ChatSettings) -> None:
        self.nats = nats
        self.bridge = bridge
        self.settings = settings
        self._used: dict[str, float] = {}  # subject -> last time a reader came or went

    async def room(self, channel: str) -> FanoutLog[FanoutMessage]:
        subject = room_subject(self.nats, channel)
        self._used[subject] = time.monotonic()
        s = self.settings
        return await self.bridge.feed(
            subject, history=s.room_retention, stream=s.stream, capacity=s.room_retention + ROOM_SLACK
        )

    async def user(self, user_id: str) -> FanoutLog[FanoutMessage]:
        subject = user_subject(self.nats, user_id)
        self._used[subject] = time.monotonic()
        s = self.settings
        return await self.bridge.feed(
            subject,
            history=max(1, s.notify_history),
            stream=s.notify_stream,
            capacity=s.notify_retention + 8,
        )

    def touch(self, flog: FanoutLog[FanoutMessage]) -> None:
        """A reader of ``flog`` left (or used it): its idle time starts now."""
        self._used[flog.name] = time.monotonic()

    async def release_idle(self) -> int:
        """Release the logs nobody reads and nobody used for ``feed_idle_s``; how many."""
        cutoff = time.monotonic() - self.settings.feed_idle_s
        released = 0
        for subject, used in list(self._used.items()):
            flog = self.bridge.log_for(subject)
            if flog is None:
                if used < cutoff:
                    self._used.pop(subject, None)
                continue
            if flog.subscribers == 0 and used < cutoff:
                self._used.pop(subject, None)
                if await self.bridge.release(subject):
                    released += 1
        return released

    def room_logs(self) -> list[FanoutLog[FanoutMessage]]:
        prefix = room_subject(self.nats, "")
        out = []
        for subject in self._used:
            if subject.startswith(prefix):
                flog = self.bridge.log_for(subject)
                if flog is not None:
                    out.append(flog)
        return out
