"""liveapi's app: the service skeleton with a database, the log stream, identities and the re-logger."""

from __future__ import annotations

from fastapi import FastAPI

from onair.service import RuntimeSettings, Service, ServiceSpec, create_service_app
from onair_services.liveapi import routes
from onair_services.liveapi.relog import relog_loop
from onair_services.liveapi.settings import LiveapiSettings
from onair_services.liveapi.store import ChannelStore

SPEC = ServiceSpec(
    name="liveapi",
    title="onair liveapi",
    description="The streamer's write side: channels, publish keys, title, tags and options. "
    "Every change is logged as a media.broad_info.* event; responses carry the events' positions.",
    migrations="onair_services.liveapi:migrations",
    kafka=True,
    identity=True,
)


def create_app(
    settings: RuntimeSettings | None = None,
    liveapi: LiveapiSettings | None = None,
    *,
    configure_logs: bool = True,
) -> FastAPI:
    own = liveapi or LiveapiSettings()

    def setup(svc: Service) -> None:
        svc.state["settings"] = own

        @svc.on_start
        async def start(svc: Service) -> None:
            store = ChannelStore(svc.sessions)
            svc.state["store"] = store
            svc.background(relog_loop(svc, store, own), "relog")

    return create_service_app(
        SPEC, [routes.router], settings=settings, setup=setup, configure_logs=configure_logs
    )
