"""chat's NATS side: subjects, the JetStream streams, and the room publisher that numbers events.

Every room event (message, delete, donation, system) is published once, to JetStream, on
``<prefix>.chat.room.<channel>`` (stream ``CHAT``, ``ONAIR_CHAT_STREAM``). It carries ``n``, the
room's own event number: 1, 2, 3 ... with no holes, in the stream's order. That number is the SSE
``id:`` and what a reconnecting viewer resumes after, so a process that restarted, or another
process, resumes it exactly, and a gap's size is exact (``first kept n - 1 - last seen n``).

Numbering without a coordinator: the publisher reads the room's last event (its stream sequence
``s`` and its ``n``) and publishes ``n + 1`` with ``Nats-Expected-Last-Subject-Sequence: s``; the
server stores it only if nothing was appended to the room since (JetStream's optimistic
concurrency, the way its KV store does compare-and-set). If another process won, the publisher
reads the new last event and tries again. Within a process posts to one room take turns (a lock
per room), and the last event is known from the previous publish or the process's own room log,
so the extra read happens only after another process posted. ``Nats-Msg-Id`` makes a retried
publish (a lost acknowledgement, a redelivered donation) a no-op within the stream's duplicate
window.

Personal notifications go to ``<prefix>.notify.user.<user>`` (stream ``NOTIFY``), also with a
``Nats-Msg-Id``, so a republished notification is stored once.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DiscardPolicy, Header, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from onair.clients import NatsClient
from onair.fanout.bridge import FanoutBridge, FanoutMessage
from onair.logging import get_logger
from onair.service import Unavailable
from onair_services.chat.settings import ChatSettings

log = get_logger("onair.chat.streams")

WRONG_LAST_SEQUENCE = 10071  # JetStream: "wrong last sequence" (another publisher won the race)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def subject_token(value: str) -> str:
    """``value`` as one NATS subject token: itself when it is safe, else ``h`` + a SHA-256 prefix."""
    if _TOKEN.match(value):
        return value
    return "h" + hashlib.sha256(value.encode()).hexdigest()[:40]


def room_subject(nats: NatsClient, channel: str) -> str:
    return nats.subject("chat", "room", channel)


def user_subject(nats: NatsClient, user_id: str) -> str:
    return nats.subject("notify", "user", subject_token(user_id))


def now_ms() -> int:
    return int(time.time() * 1000)


def event_n(item: FanoutMessage) -> int:
    """The room event number of a message in a room log."""
    return int(orjson.loads(item.data)["n"])


def stream_configs(nats: NatsClient, settings: ChatSettings) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=settings.stream,
            description="onair chat rooms: every room event, the history joiners and reconnects read",
            subjects=[nats.subject("chat", "room", ">")],
            max_msgs_per_subject=settings.room_retention,
            max_age=settings.stream_max_age_s,
            max_bytes=settings.stream_max_bytes,
            discard=DiscardPolicy.OLD,
            storage=StorageType.FILE,
            duplicate_window=settings.duplicate_window_s,
            allow_direct=True,
            num_replicas=settings.stream_replicas,
        ),
        StreamConfig(
            name=settings.notify_stream,
            description="onair personal notifications (went_live), de-duplicated by Nats-Msg-Id",
            subjects=[nats.subject("notify", "user", ">")],
            max_msgs_per_subject=settings.notify_retention,
            max_age=settings.notify_max_age_s,
            discard=DiscardPolicy.OLD,
            storage=StorageType.FILE,
            duplicate_window=settings.duplicate_window_s,
            allow_direct=True,
            num_replicas=settings.stream_replicas,
        ),
    ]


async def ensure_streams(nats: NatsClient, settings: ChatSettings) -> None:
    """Create chat's streams, or bring an existing one to this configuration (idempotent)."""
    js = nats.jetstream()
    for config in stream_configs(nats, settings):
        try:
            await js.add_stream(config)
        except BadRequestError:  # exists with another configuration (e.g. a changed retention)
            await js.update_stream(config)


class RoomPublisher:
    """Publishes room events with their room number ``n`` (see the module docstring)."""

    def __init__(
        self, nats: NatsClient, bridge: FanoutBridge, settings: ChatSettings, *, known_rooms: int = 10_000
    ) -> None:
        self.nats = nats
        self.bridge = bridge
        self.stream = settings.stream
        self.retries = 20
        self._last: OrderedDict[str, tuple[int, int]] = OrderedDict()  # subject -> (stream seq, n)
        self._known = known_rooms
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self.conflicts = 0

    async def publish(
        self,
        channel: str,
        event: Mapping[str, Any],
        *,
        msg_id: str | None = None,
        event_id: int | None = None,
    ) -> dict[str, Any]:
        """Publish ``event`` (``type`` and its fields) into the room; the stored payload.

        The payload is ``{"type", "id", "n", **fields, "ts"}``: ``n`` the room event number,
        ``id`` the message's id (``n`` itself unless ``event_id`` says which message the event is
        about, e.g. a delete), ``ts`` epoch milliseconds. Raises :class:`Unavailable` when NATS
        does not take it.
        """
        subject = room_subject(self.nats, channel)
        uid = msg_id or uuid.uuid4().hex
        lock, users = self._locks.setdefault(subject, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                return await self._publish(subject, event, uid, event_id)
        finally:
            users[0] -= 1
            if users[0] == 0:
                self._locks.pop(subject, None)

    async def _publish(
        self, subject: str, event: Mapping[str, Any], uid: str, event_id: int | None
    ) -> dict[str, Any]:
        headers = {Header.MSG_ID.value: uid}
        fresh = False  # after a conflict: ask the stream, not what this process has seen
        for _attempt in range(self.retries):
            last_seq, last_n = await self._last_of(subject, fresh=fresh)
            n = last_n + 1
            payload = {"type": event["type"], "id": event_id if event_id is not None else n, "n": n}
            payload.update((k, v) for k, v in event.items() if k != "type")
            payload["ts"] = now_ms()
            headers[Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value] = str(last_seq)
            try:
                ack = await self.nats.js_publish(subject, orjson.dumps(payload), headers=dict(headers))
            except BadRequestError as exc:
                if exc.err_code != WRONG_LAST_SEQUENCE:
                    raise Unavailable("chat's message stream") from exc
                self.conflicts += 1
                self._last.pop(subject, None)
                fresh = True
                continue
            except (NatsTimeoutError, TimeoutError):
                # Stored or not? The room's last event tells when it is ours; else try again.
                self._last.pop(subject, None)
                stored = await self._stored_as(subject, uid)
                if stored is not None:
                    return stored
                continue
            except Exception as exc:
                raise Unavailable("chat's message stream") from exc
            if ack.duplicate:  # stored before, under this msg id (a retry): that is the event
                return await self._payload_at(ack.seq)
            self._remember(subject, ack.seq, n)
            return payload
        raise Unavailable("chat's message stream (too many concurrent posts to this room)")

    def _remember(self, subject: str, seq: int, n: int) -> None:
        self._last[subject] = (seq, n)
        self._last.move_to_end(subject)
        while len(self._last) > self._known:
            self._last.popitem(last=False)

    async def _last_of(self, subject: str, *, fresh: bool = False) -> tuple[int, int]:
        """(stream seq, n) of the room's last event: the newest of what this process knows, or
        read from the stream (0, 0 for a room without events; always read when ``fresh``)."""
        known = None if fresh else self._last.get(subject)
        flog = None if fresh else self.bridge.log_for(subject)
        if flog is not None:
            for seq in range(flog.head - 1, max(flog.tail, flog.head - 4) - 1, -1):
                item = flog.entry(seq)
                if isinstance(item, FanoutMessage) and item.stream_seq is not None:
                    if known is None or item.stream_seq > known[0]:
                        known = (item.stream_seq, event_n(item))
                    break
        if known is not None:
            return known
        js = self.nats.jetstream()
        try:
            msg = await js.get_last_msg(self.stream, subject, direct=True)
        except NotFoundError:
            return 0, 0
        except Exception as exc:
            raise Unavailable("chat's message stream") from exc
        last = (int(msg.seq or 0), int(orjson.loads(msg.data or b"{}").get("n", 0)))
        self._remember(subject, *last)
        return last

    async def _stored_as(self, subject: str, uid: str) -> dict[str, Any] | None:
        js = self.nats.jetstream()
        try:
            msg = await js.get_last_msg(self.stream, subject, direct=True)
        except NotFoundError:
            return None
        except Exception as exc:
            raise Unavailable("chat's message stream") from exc
        if (msg.headers or {}).get(Header.MSG_ID.value) != uid:
            return None
        payload: dict[str, Any] = orjson.loads(msg.data or b"{}")
        self._remember(subject, int(msg.seq or 0), int(payload["n"]))
        return payload

    async def _payload_at(self, seq: int) -> dict[str, Any]:
        js = self.nats.jetstream()
        try:
            msg = await js.get_msg(self.stream, seq, direct=True)
        except Exception as exc:
            raise Unavailable("chat's message stream") from exc
        payload: dict[str, Any] = orjson.loads(msg.data or b"{}")
        return payload
