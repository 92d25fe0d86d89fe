"""Every route of an app, flattened: what the OpenAPI pass, ``Allow`` and the deploy checks walk.

FastAPI >= 0.16x keeps included routers as one entry of ``app.routes`` (resolved lazily);
:func:`iter_routes` yields each real route with its effective path, methods and dependencies
whichever FastAPI is installed. Services declare full paths (``APIRouter(prefix="/live")`` and
``app.include_router(router)`` without a prefix), so a route's template is its metric label too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import routing as fastapi_routing


def iter_routes(app: Any) -> Iterator[Any]:
    """Each route of ``app`` (APIRoute-like: ``path_format``, ``methods``, ``dependant``, ...)."""
    routes = getattr(app, "routes", ())
    flatten = getattr(fastapi_routing, "iter_route_contexts", None)
    if flatten is None:  # older FastAPI: include_router copied the routes into app.routes
        yield from routes
        return
    yield from flatten(routes)


def route_paths(app: Any) -> set[str]:
    """The path templates of every HTTP route of ``app`` (e.g. for probe-path checks)."""
    return {p for r in iter_routes(app) if (p := getattr(r, "path_format", None) or getattr(r, "path", None))}


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method some route of ``app`` accepts for ``path`` (for the ``Allow`` header)."""
    methods: set[str] = set()
    for route in iter_routes(app):
        route_methods = getattr(route, "methods", None)
        regex = getattr(route, "path_regex", None)
        if route_methods and regex is not None and regex.match(path):
            methods |= set(route_methods)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)
