"""The live sessions of this media process and the loops that keep every session honest.

:class:`SessionManager` is the one way a session opens or closes, whoever asks (the WebSocket
ingest, the built-in simulated encoder, the owner's stop, the reaper, the shutdown):

* ``authenticate``: the publish key against the ``media.publish_keys`` projection — SHA-256 of
  the given key compared in constant time with the stored digest;
* ``open``: the store's conditional open (one live session per channel, across instances), then
  ``media.live_stream.status`` ``open`` and ``media.live_stream.metadata`` (source, renditions);
* ``close``: the store's conditional close — only the winner logs ``close`` with its reason;
* loops: lease renewal of this process's sessions (every ``lease_s/3``; a session closed
  elsewhere ends locally), the reaper (closes expired leases of any instance: ``lease_expired``),
  and the re-logger (status events a crash kept off the log);
* ``shutdown``: closes every local session with ``shutdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from onair.logstream import Position
from onair.service import Service
from onair_services.media.ladder import Rendition, Source, ladder
from onair_services.media.settings import MediaSettings
from onair_services.media.store import AlreadyLive, MediaStore, PublishKey, Transition, now_ms

STATUS = "media.live_stream.status"
METADATA = "media.live_stream.metadata"

OPENED = Counter("onair_media_sessions_opened_total", "Live sessions opened", ["kind"])
REFUSED = Counter("onair_media_sessions_refused_total", "Encoders refused", ["reason"])
CLOSED = Counter("onair_media_sessions_closed_total", "Live sessions closed (by this process)", ["reason"])
LOCAL = Gauge("onair_media_sessions_local", "Live sessions held by this process", ["instance"])
RELOGGED = Counter("onair_media_relogged_channels_total", "Channels whose stream status was re-logged")

# WebSocket close codes (4000-4999 are the application's) with what they mean.
BAD_REQUEST = 4400
INVALID_KEY = 4403
TIMEOUT = 4408
ALREADY_LIVE = 4409
ENDED_ELSEWHERE = 4410


class Refused(Exception):
    """An encoder is turned away: ``code`` (WebSocket close code) and a one-line ``reason``."""

    def __init__(self, code: int, reason: str, label: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.label = label


@dataclass
class LocalSession:
    id: str
    channel: str
    kind: str  # encoder | simulated
    source: Source
    renditions: list[Rendition]
    seq: int
    opened_ms: int
    #: Resolved with the reason when the session ended by anything but its own connection
    #: (stopped, lease lost, shutdown): the connection then closes.
    ended: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def key_matches(key: str, stored_sha256: str) -> bool:
    """Constant-time comparison of the key's SHA-256 with the stored hex digest."""
    try:
        stored = bytes.fromhex(stored_sha256)
    except ValueError:
        return False
    return hmac.compare_digest(hashlib.sha256(key.encode()).digest(), stored)


class SessionManager:
    def __init__(self, svc: Service, store: MediaStore, settings: MediaSettings) -> None:
        self.svc = svc
        self.store = store
        self.settings = settings
        self.instance = settings.instance_id
        self.local: dict[str, LocalSession] = {}
        self._lease_ms = int(settings.lease_s * 1000)
        self._last_prune = 0.0
        self._renewal: asyncio.Task[None] | None = None

    # -- admission -------------------------------------------------------------------------------
    async def authenticate(self, channel: str, key: str | None) -> PublishKey:
        known = await self.store.publish_key(channel)
        if not key or known is None or not key_matches(key, known.key_sha256):
            raise Refused(INVALID_KEY, "invalid publish key", "invalid_key")
        return known

    async def open(self, channel: str, source: Source, *, kind: str) -> LocalSession:
        renditions = ladder(source)
        session_id = uuid.uuid4().hex
        try:
            transition = await self._open(channel, session_id, source, renditions, kind)
        except AlreadyLive as live:
            if live.lease_expires_ms >= now_ms():
                raise Refused(
                    ALREADY_LIVE, "channel already live: another encoder is connected", "already_live"
                ) from None
            # the holder died and no reaper got to it yet: reap it here, then try once more
            await self.reap(live.session_id)
            try:
                transition = await self._open(channel, session_id, source, renditions, kind)
            except AlreadyLive:
                raise Refused(
                    ALREADY_LIVE, "channel already live: another encoder is connected", "already_live"
                ) from None
        session = LocalSession(session_id, channel, kind, source, renditions, transition.seq, now_ms())
        self.local[session_id] = session
        LOCAL.labels(self.instance).set(len(self.local))
        OPENED.labels(kind).inc()
        await self.log_transition(transition)
        return session

    async def _open(
        self, channel: str, session_id: str, source: Source, renditions: list[Rendition], kind: str
    ) -> Transition:
        return await self.store.open(
            channel,
            session_id,
            instance=self.instance,
            kind=kind,
            source=source.model_dump(),
            renditions=[r.model_dump() for r in renditions],
            lease_ms=self._lease_ms,
        )

    # -- ending ----------------------------------------------------------------------------------
    async def close(self, session_id: str, reason: str) -> bool:
        """Close a session wherever it runs; True if this call closed it (and logged ``close``).

        A session held by another instance ends there at its next lease renewal.
        """
        self._forget(session_id, reason)
        transition = await self.store.close(session_id, reason)
        if transition is None:
            return False
        CLOSED.labels(reason).inc()
        await self.log_transition(transition)
        return True

    async def reap(self, session_id: str) -> bool:
        transition = await self.store.close(session_id, "lease_expired", expired_before_ms=now_ms())
        if transition is None:
            return False
        self._forget(session_id, "lease_expired")
        CLOSED.labels("lease_expired").inc()
        self.svc.log.warning(
            "lease expired: session reaped", channel=transition.channel, session_id=session_id
        )
        await self.log_transition(transition)
        return True

    def _forget(self, session_id: str, reason: str) -> None:
        session = self.local.pop(session_id, None)
        if session is not None and not session.ended.done():
            session.ended.set_result(reason)
        LOCAL.labels(self.instance).set(len(self.local))

    async def shutdown(self) -> None:
        """Close every session of this process with ``shutdown`` (the stop hook).

        Leases are renewed until then: the skeleton stops background tasks and projections
        before the stop hooks, and a slow stop must not let another instance's reaper take the
        sessions (``lease_expired``) while they are still being closed here.
        """
        sessions = list(self.local.values())
        results = await asyncio.gather(
            *(self.close(s.id, "shutdown") for s in sessions), return_exceptions=True
        )
        for session, result in zip(sessions, results, strict=True):
            if isinstance(result, BaseException):
                self.svc.log.warning("could not close at shutdown", session_id=session.id, error=repr(result))
        renewal, self._renewal = self._renewal, None
        if renewal is not None:
            renewal.cancel()
            with contextlib.suppress(BaseException):
                await renewal

    # -- events ----------------------------------------------------------------------------------
    async def log_transition(self, t: Transition, *, sentence: str | None = None) -> bool:
        """Log the events of a committed change; advance ``logged_seq`` when all were acked."""
        timeout = self.settings.event_ack_timeout_s
        calls: list[Awaitable[Position | None]] = []
        if t.status == "open":
            calls.append(
                self.svc.log_event(
                    sentence or "stream opened",
                    category=STATUS,
                    entity=t.channel,
                    seq=t.seq,
                    timeout_s=timeout,
                    status="open",
                    session_id=t.session_id,
                )
            )
            calls.append(
                self.svc.log_event(
                    sentence or "renditions announced",
                    category=METADATA,
                    entity=t.channel,
                    seq=t.seq,
                    timeout_s=timeout,
                    session_id=t.session_id,
                    source=t.source,
                    renditions=t.renditions,
                )
            )
        else:
            calls.append(
                self.svc.log_event(
                    sentence or "stream closed",
                    category=STATUS,
                    entity=t.channel,
                    seq=t.seq,
                    timeout_s=timeout,
                    status="close",
                    session_id=t.session_id,
                    reason=t.reason,
                )
            )
        positions = await asyncio.gather(*calls)
        if not all(p is not None for p in positions):
            return False
        try:
            if sentence is None:
                await self.store.mark_logged(t.channel, t.seq)
            else:
                await self.store.mark_relogged(t.channel, t.seq)
        except Exception as exc:  # the change and its events are done; the re-logger repeats them
            self.svc.log.warning("could not record the events as logged", channel=t.channel, error=repr(exc))
            return False
        return True

    # -- loops -----------------------------------------------------------------------------------
    def start(self) -> None:
        # the renewal outlives the service's background tasks: shutdown() ends it (see there)
        self._renewal = asyncio.create_task(self._every(self.settings.lease_s / 3, self.renew_pass))
        self.svc.background(self._every(self.settings.reaper_every_s, self.reap_pass, jitter=True), "reaper")
        self.svc.background(self._every(self.settings.relog_interval_s, self.relog_pass), "relog")

    async def _every(
        self, interval_s: float, work: Callable[[], Awaitable[Any]], *, jitter: bool = False
    ) -> None:
        while True:
            try:
                await work()
            except Exception as exc:  # the database may be away: the next pass tries again
                self.svc.log.warning(
                    "media loop pass failed", work=getattr(work, "__name__", "?"), error=repr(exc)
                )
            await asyncio.sleep(interval_s * (random.uniform(0.8, 1.2) if jitter else 1.0))

    async def renew_pass(self) -> None:
        if not self.local:
            return
        lost = await self.store.renew(self.instance, list(self.local), self._lease_ms)
        for session_id, reason in lost.items():
            session = self.local.get(session_id)
            if session is not None:
                self.svc.log.warning(
                    "session ended elsewhere", channel=session.channel, session_id=session_id, reason=reason
                )
            self._forget(session_id, reason)

    async def reap_pass(self) -> int:
        reaped = 0
        for session_id in await self.store.expired(now_ms()):
            if await self.reap(session_id):
                reaped += 1
        clock = asyncio.get_running_loop().time()
        if clock - self._last_prune > 600:
            self._last_prune = clock
            await self.store.prune(now_ms() - int(self.settings.session_retention_s * 1000))
        return reaped

    async def relog_pass(self) -> int:
        done = 0
        cutoff = now_ms() - int(self.settings.relog_grace_s * 1000)
        for state in await self.store.lagging(cutoff, 200):
            if state.live_session_id is not None:
                live = await self.store.session(state.live_session_id)
                if live is None:
                    continue
                t = Transition(
                    state.channel, live.id, "open", state.status_seq, None, live.source, live.renditions
                )
            elif state.last_session_id is not None:
                t = Transition(
                    state.channel, state.last_session_id, "close", state.status_seq, state.last_reason
                )
            else:
                continue
            if await self.log_transition(t, sentence="stream status re-logged"):
                done += 1
                RELOGGED.inc()
        return done
