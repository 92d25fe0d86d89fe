"""liveinfo's app: the service skeleton with its projections, read model, sweeper and routes."""

from __future__ import annotations

from fastapi import FastAPI

from onair.logstream import Projection
from onair.service import RuntimeSettings, Service, ServiceSpec, create_service_app
from onair_services.liveinfo import routes
from onair_services.liveinfo.fastpath import ChannelReadFastPath
from onair_services.liveinfo.projections import channels_projection, sweep_viewers, viewers_projection
from onair_services.liveinfo.readmodel import LiveReadModel
from onair_services.liveinfo.settings import LiveinfoSettings


def _projections(svc: Service) -> list[Projection]:
    model: LiveReadModel = svc.state["live"]
    settings: LiveinfoSettings = svc.state["settings"]
    if not settings.projections:
        return []
    return [channels_projection(svc, model), viewers_projection(svc, model, settings)]


SPEC = ServiceSpec(
    name="liveinfo",
    title="onair liveinfo",
    description="What is on air: channel views, the on-air list, the popularity ranking, live updates.",
    migrations="onair_services.liveinfo:migrations",
    valkey=True,
    tracking=True,
    nats=True,
    projections=_projections,
    identity=False,  # public reads: nothing here depends on who asks
)


def create_app(
    settings: RuntimeSettings | None = None,
    liveinfo: LiveinfoSettings | None = None,
    *,
    configure_logs: bool = True,
) -> FastAPI:
    own = liveinfo or LiveinfoSettings()

    def setup(svc: Service) -> None:
        svc.state["settings"] = own
        assert svc.app is not None
        svc.app.add_middleware(ChannelReadFastPath, service=svc)  # inside the skeleton's middleware

        @svc.on_start
        async def open_read_model(svc: Service) -> None:
            model = LiveReadModel(svc, own)
            await model.start()
            svc.state["live"] = model
            if own.projections:
                await model.rebuild_ranking()
                svc.background(sweep_viewers(svc, model, own), "viewer-sweeper")

        @svc.on_stop
        async def close_read_model(svc: Service) -> None:
            model: LiveReadModel | None = svc.state.pop("live", None)
            if model is not None:
                await model.close()

    return create_service_app(
        SPEC, [routes.router], settings=settings, setup=setup, configure_logs=configure_logs
    )
