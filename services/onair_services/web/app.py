"""The web app: the skeleton, the pages, ``/static`` and an HTML 404 for browsers.

Served through the gateway at ``/`` (its fallback route), so the pages, the BFF and the public
API share one origin: no CORS, and the auth service's refresh cookie (``Path=/auth``) travels with
``POST /auth/refresh``. Every page carries a Content-Security-Policy without ``unsafe-inline``.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from onair.service import RuntimeSettings, Service, ServiceSpec, create_service_app
from onair_services.web import pages
from onair_services.web.settings import WebSettings

SPEC = ServiceSpec(
    name="web",
    title="onair web",
    description="The pages (server-rendered HTML) and their static files.",
    identity=False,  # pages are public; the data behind them is asked for by the browser
)


class Static(StaticFiles):
    """``/static``: revalidated on every use (ETag / Last-Modified), typed, never sniffed."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def create_app(
    settings: RuntimeSettings | None = None,
    web: WebSettings | None = None,
    *,
    configure_logs: bool = True,
) -> FastAPI:
    own = web or WebSettings()

    def setup(svc: Service) -> None:
        assert svc.app is not None
        app = svc.app
        app.state.web_settings = own
        app.state.static_version = pages.static_version()
        app.mount("/static", Static(directory=pages.STATIC_DIR), name="static")
        json_404 = app.exception_handlers[StarletteHTTPException]

        async def not_found(request: Request, exc: Exception) -> Response:
            # Browsers get a page; API clients (and the contract checks) the skeleton's JSON body.
            assert isinstance(exc, StarletteHTTPException)
            if exc.status_code == 404 and "text/html" in request.headers.get("accept", ""):
                return pages.not_found_page(request)
            answer = json_404(request, exc)
            return await answer if inspect.isawaitable(answer) else answer

        app.add_exception_handler(StarletteHTTPException, not_found)

    return create_service_app(
        SPEC, [pages.router], settings=settings, setup=setup, configure_logs=configure_logs
    )
