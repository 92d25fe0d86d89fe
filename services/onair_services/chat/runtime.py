"""The running parts of one chat process, made in the service's start hook (``svc.state["chat"]``)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.requests import HTTPConnection
from starlette.types import Scope

from onair.cache import NearCache
from onair.fanout.bridge import FanoutBridge
from onair.logging import get_logger
from onair.service import Service
from onair_services.chat import metrics
from onair_services.chat.donations import Donations
from onair_services.chat.feeds import Feeds
from onair_services.chat.notify import Notifier
from onair_services.chat.ratelimit import Limit, PostLimiter
from onair_services.chat.rooms import RoomDirectory
from onair_services.chat.settings import ChatSettings
from onair_services.chat.streams import RoomPublisher, ensure_streams
from onair_services.chat.viewers import Viewers

log = get_logger("onair.chat")


class ChatRuntime:
    def __init__(self, svc: Service, settings: ChatSettings) -> None:
        assert svc.nats is not None and svc.valkey is not None
        self.svc = svc
        self.settings = settings
        self.nats = svc.nats
        self.bridge = FanoutBridge(svc.nats, capacity=settings.room_retention)
        self.feeds = Feeds(svc.nats, self.bridge, settings)
        self.publisher = RoomPublisher(svc.nats, self.bridge, settings)
        self.rooms = RoomDirectory(
            svc,
            svc.cached_reader("rooms", near=NearCache(50_000, 64 << 20, ttl_s=300)),
            svc.cached_reader("mutes", near=NearCache(100_000, 32 << 20, ttl_s=300)),
        )
        self.limiter = PostLimiter(
            svc.valkey,
            user=Limit(settings.user_limit, settings.user_window_s),
            room=Limit(settings.room_limit, settings.room_window_s),
        )
        self.viewers = Viewers(svc.valkey, settings.process_id, settings.viewer_count_interval_s)
        self.notifier = Notifier(svc, svc.nats, settings)
        self.donations = Donations(svc.nats, self.publisher, self.rooms, settings)

    async def start(self) -> None:
        await ensure_streams(self.nats, self.settings)
        await self.bridge.start()
        metrics.track(self)

    async def close(self) -> None:
        await self.bridge.close()

    # -- what the metrics read at scrape time ------------------------------------------------------
    def viewer_counts(self) -> dict[str, int]:
        return dict(self.viewers.by_transport)

    def delivery_totals(self) -> tuple[int, int, int]:
        delivered = gaps = missed = 0
        for flog in self.feeds.room_logs():
            delivered += flog.delivered
            gaps += flog.gaps_behind
            missed += flog.missed_behind
        return delivered, gaps, missed

    # -- background work -------------------------------------------------------------------------
    async def report_viewers_forever(self) -> None:
        import asyncio

        while True:
            await asyncio.sleep(self.settings.viewer_count_interval_s)
            try:
                await self.viewers.report()
            except Exception as exc:  # Valkey away: the log lines went out, the totals next time
                log.warning("viewer count report failed", error=repr(exc))

    async def release_idle_forever(self) -> None:
        import asyncio

        every = max(1.0, min(30.0, self.settings.feed_idle_s / 2))
        while True:
            await asyncio.sleep(every)
            try:
                await self.feeds.release_idle()
            except Exception as exc:  # pragma: no cover - NATS away
                log.warning("feed release failed", error=repr(exc))


def chat_of(conn: HTTPConnection) -> ChatRuntime:
    """The chat runtime of the app serving this request or WebSocket (a FastAPI dependency)."""
    runtime: Any = conn.app.state.service.state.get("chat")
    if runtime is None:  # pragma: no cover - the start hook did not run
        raise RuntimeError("chat is not started")
    return runtime


def chat_of_request(request: Request) -> ChatRuntime:
    return chat_of(request)


def chat_of_scope(scope: Scope) -> ChatRuntime:
    """The chat runtime of the app serving an ASGI request (``scope["app"]``, set by Starlette)."""
    runtime: ChatRuntime = scope["app"].state.service.state["chat"]
    return runtime
