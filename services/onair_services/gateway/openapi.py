"""The public API in one OpenAPI document (``GET /openapi.json``, browsable at ``/docs``).

Built from the upstreams' own ``/openapi.json`` documents with the platform's
:func:`onair.service.openapi.merge_openapi` (only the paths the route table sends to that
service; schemas merged, clashing names renamed; every operation tagged with its service and
documenting the gateway's own 429/502/503/504), then told what the gateway does on each route:

* ``public`` routes: no ``security`` (the gateway ignores tokens there);
* ``required``: ``BearerAuth`` and 401; ``optional``: ``BearerAuth`` or nothing, and 401 (a bad
  token is refused, never treated as anonymous);
* roles the table requires for a method: 403 and ``x-onair-roles``.

Upstream documents are fetched on demand and kept ``ONAIR_GATEWAY_OPENAPI_TTL_S`` (5 s when one
could not be fetched; the document then names the missing services in ``x-onair-unavailable``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from onair.service.openapi import BEARER_SCHEME, merge_openapi
from onair_services.gateway.table import RouteTable

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


class PublicOpenAPI:
    """The merged document, refreshed on demand (one refresh at a time)."""

    def __init__(
        self,
        table: RouteTable,
        base_urls: Mapping[str, str],
        session: aiohttp.ClientSession,
        own: Callable[[], dict[str, Any]],
        *,
        ttl_s: float = 60.0,
        title: str = "onair public API",
        version: str = "0.1.0",
    ) -> None:
        self.table = table
        self.base_urls = dict(base_urls)
        self.session = session
        self.own = own
        self.ttl_s = ttl_s
        self.title = title
        self.version = version
        self._doc: dict[str, Any] | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def document(self) -> dict[str, Any]:
        if self._doc is not None and time.monotonic() < self._expires:
            return self._doc
        async with self._lock:
            if self._doc is None or time.monotonic() >= self._expires:
                docs, missing = await self._fetch_all()
                self._doc = self.merge(docs, missing)
                self._expires = time.monotonic() + (min(self.ttl_s, 5.0) if missing else self.ttl_s)
        return self._doc

    async def _fetch_all(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        names = list(dict.fromkeys(r.upstream for r in self.table.routes if r.openapi))
        results = await asyncio.gather(*(self._fetch(n) for n in names))
        docs = {n: d for n, d in zip(names, results, strict=True) if d is not None}
        return docs, [n for n in names if n not in docs]

    async def _fetch(self, name: str) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(3.0):
                async with self.session.get(f"{self.base_urls[name]}/openapi.json") as resp:
                    if resp.status != 200:
                        return None
                    doc = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def merge(self, docs: Mapping[str, dict[str, Any]], missing: list[str]) -> dict[str, Any]:
        """One document from the upstreams' ``docs`` (by service name) and the gateway's own."""
        by_prefix: dict[str, dict[str, Any]] = {"/.well-known/identity-jwks.json": self.own()}
        services = {"/.well-known/identity-jwks.json": "gateway"}
        for route in self.table.routes:
            if route.openapi and route.upstream in docs:
                by_prefix[route.prefix] = docs[route.upstream]
                services[route.prefix] = route.upstream
        merged = merge_openapi(
            by_prefix,
            services=services,
            title=self.title,
            version=self.version,
            description=(
                "Every route of onair's public API, as the gateway serves it. Send the access token "
                "from POST /auth/login as `Authorization: Bearer <token>`."
            ),
        )
        paths: dict[str, Any] = merged.get("paths", {})
        for path in list(paths):
            found = self.table.match(path)
            item = paths[path]
            service = next((op.get("x-onair-service") for m, op in item.items() if m in _METHODS), None)
            if service == "gateway":
                for op in item.values():
                    if isinstance(op, dict):
                        op.pop("security", None)
                continue
            if found is None or found.upstream != service:
                del paths[path]  # the table sends this path elsewhere: not reachable as documented
                continue
            route = found
            for method in _METHODS:
                op = item.get(method)
                if op is None:
                    continue
                responses = op.setdefault("responses", {})
                if route.auth == "public":
                    op.pop("security", None)
                elif route.auth == "required":
                    op["security"] = [{BEARER_SCHEME: []}]
                    responses.setdefault("401", {"description": "No valid access token", **_ERROR})
                else:
                    op.setdefault("security", [{BEARER_SCHEME: []}, {}])
                    responses.setdefault(
                        "401", {"description": "The access token sent is not valid", **_ERROR}
                    )
                roles = route.roles_for(method.upper())
                if roles:
                    op["x-onair-roles"] = list(roles)
                    responses.setdefault(
                        "403", {"description": f"Needs one of the roles {', '.join(roles)}", **_ERROR}
                    )
        if missing:
            merged["x-onair-unavailable"] = sorted(missing)
        merged["servers"] = [{"url": "/"}]
        return merged
