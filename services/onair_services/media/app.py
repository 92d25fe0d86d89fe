"""media's app: the skeleton with a database, the publish-key projection, identities, the ingest
WebSocket, the session loops (leases, reaper, re-logger) and a stop hook that closes every session."""

from __future__ import annotations

from fastapi import FastAPI

from onair.service import RuntimeSettings, Service, ServiceSpec, create_service_app
from onair_services.media import ingest, routes
from onair_services.media.live import SessionManager
from onair_services.media.projections import publish_keys_projection
from onair_services.media.settings import MediaSettings
from onair_services.media.store import MediaStore

SPEC = ServiceSpec(
    name="media",
    title="onair media",
    description="A simulated ingest and transcoder: encoders connect to WS /ingest/{channel} with "
    "their publish key; sessions are logged as media.live_stream.status / .metadata events.",
    migrations="onair_services.media:migrations",
    kafka=True,
    projections=lambda svc: [publish_keys_projection()],
    identity=True,
)


def create_app(
    settings: RuntimeSettings | None = None,
    media: MediaSettings | None = None,
    *,
    configure_logs: bool = True,
) -> FastAPI:
    own = media or MediaSettings()

    def setup(svc: Service) -> None:
        @svc.on_start
        async def start(svc: Service) -> None:
            manager = SessionManager(svc, MediaStore(svc.sessions), own)
            svc.state["sessions"] = manager
            manager.start()

        @svc.on_stop
        async def stop(svc: Service) -> None:
            manager: SessionManager | None = svc.state.get("sessions")
            if manager is not None:
                await manager.shutdown()

    return create_service_app(
        SPEC, [ingest.router, routes.router], settings=settings, setup=setup, configure_logs=configure_logs
    )
