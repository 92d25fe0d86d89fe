"""search's app: the service skeleton with the ``search.index`` projection and ``GET /search``."""

from __future__ import annotations

from fastapi import FastAPI

from onair.logstream import Projection
from onair.service import RuntimeSettings, Service, ServiceSpec, create_service_app
from onair_services.search import routes
from onair_services.search.index import index_for
from onair_services.search.projections import index_projection
from onair_services.search.settings import SearchSettings


def _projections(svc: Service) -> list[Projection]:
    return [index_projection(svc, svc.state["settings"])]


SPEC = ServiceSpec(
    name="search",
    title="onair search",
    description="Channels on air, found by the words of their titles and tags (any language).",
    migrations="onair_services.search:migrations",
    projections=_projections,
    identity=False,  # public reads
)


def create_app(
    settings: RuntimeSettings | None = None,
    search: SearchSettings | None = None,
    *,
    configure_logs: bool = True,
) -> FastAPI:
    own = search or SearchSettings()

    def setup(svc: Service) -> None:
        svc.state["settings"] = own

        @svc.on_start
        async def open_index(svc: Service) -> None:
            assert svc.engine is not None
            svc.state["index"] = index_for(svc.engine.dialect.name, own.title_weight)

    return create_service_app(
        SPEC, [routes.router], settings=settings, setup=setup, configure_logs=configure_logs
    )
