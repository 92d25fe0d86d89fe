"""chat's app on the service skeleton: rooms, streams, moderation, follows, notifications, donations.

``onair serve chat`` runs it (port 8106). Needs a database (migrated on start), Valkey (near
caches, rate limits, viewer totals), NATS with JetStream (room events, notifications, donations)
and Kafka (its projections; ``media.viewer.count`` events).
"""

from __future__ import annotations

import gc
from collections.abc import Sequence

from fastapi import FastAPI

from onair.logstream import Event, Projection
from onair.service import RuntimeSettings, Service, ServiceSpec, create_service_app
from onair_services.chat.projections import notify_projection, rooms_projection
from onair_services.chat.routes import ROUTERS
from onair_services.chat.routes.streams import install_fast_sse
from onair_services.chat.runtime import ChatRuntime
from onair_services.chat.settings import ChatSettings


def _projections(svc: Service) -> list[Projection]:
    settings: ChatSettings = svc.state["settings"]
    if not settings.projections:
        return []

    async def rooms_changed(events: Sequence[Event]) -> None:
        chat: ChatRuntime = svc.state["chat"]
        await chat.rooms.changed({e.entity for e in events})

    async def went_live(events: Sequence[Event]) -> None:
        chat: ChatRuntime = svc.state["chat"]
        sessions = [str(e.data.get("session_id")) for e in events if e.data.get("status") == "open"]
        if sessions:
            await chat.notifier.publish_pending(sessions)

    return [rooms_projection(rooms_changed), notify_projection(settings, went_live)]


SPEC = ServiceSpec(
    name="chat",
    title="onair chat",
    description="Chat rooms (one per channel) over SSE and WebSocket, moderation, follows, "
    "go-live notifications and donation announcements.",
    migrations="onair_services.chat:migrations",
    valkey=True,
    tracking=True,
    nats=True,
    kafka=True,
    projections=_projections,
)


def create_app(
    settings: RuntimeSettings | None = None,
    chat_settings: ChatSettings | None = None,
    *,
    configure_logs: bool = True,
) -> FastAPI:
    """The chat app (``configure_logs=False`` for a second app in one test process)."""
    chat_settings = chat_settings or ChatSettings()

    def setup(svc: Service) -> None:
        svc.state["settings"] = chat_settings

        @svc.on_start
        async def start(svc: Service) -> None:
            chat = ChatRuntime(svc, chat_settings)
            await chat.start()
            svc.state["chat"] = chat
            svc.background(chat.report_viewers_forever(), "viewer-counts")
            svc.background(chat.release_idle_forever(), "feed-release")
            svc.background(chat.notifier.relay_forever(), "went-live-relay")
            svc.background(chat.donations.run_forever(), "donations")
            # A long-running server with thousands of streams: start-up objects out of the GC's
            # reach, so a full collection does not stall every stream (docs/fanout.md, Limits).
            if chat_settings.gc_freeze:
                gc.collect()
                gc.freeze()

        @svc.on_stop
        async def stop(svc: Service) -> None:
            chat: ChatRuntime | None = svc.state.get("chat")
            if chat is not None:
                await chat.close()

    app = create_service_app(SPEC, ROUTERS, settings=settings, setup=setup, configure_logs=configure_logs)
    install_fast_sse(app, SPEC.name)
    return app
