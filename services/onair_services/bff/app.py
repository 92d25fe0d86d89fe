"""The BFF's app: the service skeleton (an HTTP client, the identity check) and the composer."""

from __future__ import annotations

from fastapi import FastAPI

from onair.service import RuntimeSettings, Service, ServiceSpec, create_service_app
from onair_services.bff import routes
from onair_services.bff.compose import Composer
from onair_services.bff.settings import BffSettings
from onair_services.bff.upstreams import Upstreams, aiohttp_fetch, aiohttp_session, httpx_fetch
from onair_services.registry import ServiceUrls

UPSTREAMS = ("liveinfo", "chat", "wallet", "search")

SPEC = ServiceSpec(
    name="bff",
    title="onair bff",
    description="The composed data of each page, per client (web, mobile): one named place for it.",
    http_client=True,
)


def create_app(
    settings: RuntimeSettings | None = None,
    bff: BffSettings | None = None,
    urls: ServiceUrls | None = None,
    *,
    configure_logs: bool = True,
) -> FastAPI:
    own = bff or BffSettings()
    mesh = urls or ServiceUrls()

    def setup(svc: Service) -> None:
        @svc.on_start
        async def open_composer(svc: Service) -> None:
            if own.http_client == "aiohttp":
                session = aiohttp_session(own.max_connections)
                svc.state["session"] = session
                fetch = aiohttp_fetch(session)
            else:
                assert svc.http is not None
                fetch = httpx_fetch(svc.http)
            upstreams = Upstreams(
                fetch,
                mesh,
                UPSTREAMS,
                breaker_failures=own.breaker_failures,
                breaker_open_s=own.breaker_open_s,
            )
            svc.state["composer"] = Composer(upstreams, own)

        @svc.on_stop
        async def close_session(svc: Service) -> None:
            session = svc.state.pop("session", None)
            if session is not None:
                await session.close()

    return create_service_app(
        SPEC, [routes.router], settings=settings, setup=setup, configure_logs=configure_logs
    )
