"""The hot path of ``GET /live/{channel}``, without the framework's routing and dependency work.

A viewer's page reads one channel's view, again and again; with the near cache the read itself
costs microseconds and FastAPI's per-request machinery (route matching over every route,
dependency resolution, parameter validation) costs several times more. This ASGI middleware sits
inside the service skeleton's request middleware (request id, metrics, access log still apply)
and answers the plain form of that request — ``GET /live/<channel>``, no query string, no
``X-Onair-Position`` — straight from :class:`LiveReadModel`, with the same bodies as the route.
Everything else, and any error on the way, goes to the app (``routes.channel_view``), which stays
the documented, validated definition of the operation.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from onair.service import Service
from onair_services.media_events import CHANNEL_PATTERN

_CHANNEL = re.compile(CHANNEL_PATTERN)
_PREFIX = "/live/"
_RESERVED = frozenset({"ranking"})  # /live/ranking is another route
_POSITION_HEADER = b"x-onair-position"
_JSON = [(b"content-type", b"application/json")]


class ChannelReadFastPath:
    def __init__(self, app: ASGIApp, service: Service, template: str = "/live/{channel}") -> None:
        self.app = app
        self.service = service
        self.template = template
        self._route: Any = None

    def _route_of(self) -> Any:
        if self._route is None and self.service.app is not None:
            self._route = next(
                (r for r in self.service.app.routes if getattr(r, "path", None) == self.template), None
            )
        return self._route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        channel = path[len(_PREFIX) :]
        if (
            not path.startswith(_PREFIX)
            or channel in _RESERVED
            or not _CHANNEL.match(channel)
            or any(name == _POSITION_HEADER for name, _ in scope["headers"])
        ):
            return await self.app(scope, receive, send)
        model = self.service.state.get("live")
        if model is None:
            return await self.app(scope, receive, send)
        try:
            view = await model.channel(channel)
        except Exception:  # a backend is away: the app answers (and maps the error)
            return await self.app(scope, receive, send)
        if view is not None:
            status, body = 200, orjson.dumps(view)
        else:
            status = 404
            body = orjson.dumps({"error": "not_found", "detail": f"no channel {channel!r}"})
        route = self._route_of()
        if route is not None:
            scope["route"] = route  # the metrics label is the route template, as for the app
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
