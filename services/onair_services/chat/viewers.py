"""Viewers connected to this process, per room and transport, and the periodic report of them.

Every ``viewer_count_interval_s`` the process logs ``media.viewer.count`` per room that has viewers
here (``viewers``, ``process``, ``interval_s``; liveinfo sums the processes for its ranking), and
one zero after a room empties, then nothing more for it. The same counts go to a Valkey hash per
room (field = process, value = ``count:time``) so any process can tell the room's total
(``GET /chat/{channel}/stats``); fields older than three intervals are ignored and removed.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import cast

from onair.clients import ValkeyClient
from onair.logging import get_logger
from onair_services.chat import metrics
from onair_services.chat.streams import now_ms

log = get_logger("onair.chat")


class Viewers:
    def __init__(self, valkey: ValkeyClient, process: str, interval_s: float) -> None:
        self.valkey = valkey
        self.process = process
        self.interval_s = interval_s
        self.rooms: dict[str, int] = {}
        self.by_transport: dict[str, int] = {"sse": 0, "ws": 0, "notify": 0}
        self._reported: set[str] = set()  # rooms whose last report was non-zero

    def join(self, channel: str, transport: str) -> None:
        self.rooms[channel] = self.rooms.get(channel, 0) + 1
        self.by_transport[transport] += 1

    def leave(self, channel: str, transport: str) -> None:
        n = self.rooms.get(channel, 0) - 1
        if n > 0:
            self.rooms[channel] = n
        else:
            self.rooms.pop(channel, None)
        self.by_transport[transport] -= 1

    def here(self, channel: str) -> int:
        return self.rooms.get(channel, 0)

    def hash_key(self, channel: str) -> str:
        return self.valkey.key("chat", "viewers", channel)

    async def report(self) -> int:
        """Log this interval's counts (and a zero for rooms that emptied); how many lines."""
        counts = dict(self.rooms)
        for channel in self._reported - counts.keys():
            counts[channel] = 0
        if not counts:
            return 0
        stamp = now_ms()
        ttl_ms = int(self.interval_s * 3000)
        pipe = self.valkey.raw.pipeline(transaction=False)
        for channel, n in sorted(counts.items()):
            log.info(
                "viewer count",
                category="media.viewer.count",
                entity=channel,
                viewers=n,
                process=self.process,
                interval_s=self.interval_s,
            )
            key = self.hash_key(channel)
            if n:
                pipe.hset(key, self.process, f"{n}:{stamp}")
                pipe.pexpire(key, ttl_ms)
            else:
                pipe.hdel(key, self.process)
        metrics.VIEWER_REPORTS.inc(len(counts))
        self._reported = {c for c, n in counts.items() if n}
        await pipe.execute()
        return len(counts)

    async def total(self, channel: str) -> tuple[int, int]:
        """(viewers in every process that reported lately, how many processes)."""
        fields: dict[bytes, bytes] = await cast(
            Awaitable[dict[bytes, bytes]], self.valkey.raw.hgetall(self.hash_key(channel))
        )
        fresh_after = now_ms() - int(self.interval_s * 3000)
        total = processes = 0
        stale = []
        for name, value in fields.items():
            count, _, stamp = value.decode().partition(":")
            if int(stamp or 0) < fresh_after:
                stale.append(name)
                continue
            total += int(count)
            processes += 1
        if stale:
            await cast(
                Awaitable[int], self.valkey.raw.hdel(self.hash_key(channel), *[s.decode() for s in stale])
            )
        here = self.here(channel)
        me = self.process.encode()
        if me not in fields or int(fields[me].decode().partition(":")[2] or 0) < fresh_after:
            total += here  # not reported yet (or stale): count this process as it is now
            processes += 1 if here else 0
        else:
            total += here - int(fields[me].decode().partition(":")[0])  # as of now, not the last report
        return total, processes
