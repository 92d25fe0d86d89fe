"""The gateway's route table: which path goes to which service, and on what terms. One place.

Each :class:`Route` names a path prefix and the upstream service it goes to (base URLs from
``onair_services.registry.ServiceUrls``: ``ONAIR_<NAME>_URL``), then:

* ``auth`` — ``public``: tokens are ignored and no identity is sent; ``optional``: a bearer token,
  if sent, must be valid (else 401) and the upstream gets the caller's identity; ``required``: no
  valid token, no entry (401);
* ``roles`` — per method (``"*"`` for every method): the caller needs one of them (else 403);
* ``methods`` — the methods the route takes (others: 405); ``None`` for any;
* ``timeout_s`` — until the upstream's response headers, and for the whole body unless the answer
  is a stream (``text/event-stream``: then ``stream_idle_s`` between two chunks, None for no limit);
* ``body_limit`` — request body bytes (413 beyond); ``ws_max_message`` for WebSocket messages;
* ``retries`` — extra attempts for GET/HEAD/OPTIONS when the connection failed before any
  answer (never for other methods: they may have had an effect);
* ``websocket`` — WebSocket upgrades pass through on the paths this regex matches (None: none);
* ``forward_authorization`` — the user's ``Authorization`` header goes upstream (the auth service
  only: the other services get the signed identity and never the raw token);
* ``exact`` — only this path, not what is under it; ``openapi`` — list its operations in the
  combined OpenAPI document.

A prefix ``/chat`` matches ``/chat`` and ``/chat/...``, not ``/chatter``. The longest matching
prefix wins; ``/`` (the web app) is the fallback for GET and HEAD only, so anything else nobody
serves is a 404 from the gateway. Paths under ``/.well-known/`` are never sent to the fallback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

AuthMode = Literal["public", "optional", "required"]

IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS"})
READ: Final = frozenset({"GET", "HEAD"})
WRITES: Final = ("POST", "PUT", "PATCH", "DELETE")
MiB: Final = 1 << 20


@dataclass(frozen=True)
class Route:
    """One entry of the table (see the module docstring)."""

    prefix: str
    upstream: str
    auth: AuthMode = "optional"
    roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    methods: frozenset[str] | None = None
    timeout_s: float = 10.0
    stream_idle_s: float | None = 60.0
    body_limit: int = MiB
    retries: int = 1
    websocket: str | None = None
    ws_max_message: int = MiB
    forward_authorization: bool = False
    exact: bool = False
    openapi: bool = True

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or (self.prefix != "/" and self.prefix.endswith("/")):
            raise ValueError(f"route prefix {self.prefix!r} must start with '/' and not end with one")
        if self.auth == "public" and self.roles:
            raise ValueError(f"route {self.prefix}: a public route cannot require roles")
        if self.timeout_s <= 0 or self.body_limit < 0 or self.retries < 0:
            raise ValueError(f"route {self.prefix}: timeout_s > 0, body_limit >= 0, retries >= 0")
        unknown = set(self.roles) - {"*", *WRITES, *IDEMPOTENT}
        if unknown:
            raise ValueError(f"route {self.prefix}: roles for unknown methods {sorted(unknown)}")
        object.__setattr__(self, "_ws", re.compile(self.websocket) if self.websocket else None)

    @property
    def label(self) -> str:
        """The route's name in metrics and logs (bounded: one per table entry)."""
        return self.prefix

    def matches(self, path: str) -> bool:
        if self.exact or self.prefix == "/":
            return path == self.prefix if self.exact else True
        return path == self.prefix or path.startswith(self.prefix + "/")

    def roles_for(self, method: str) -> tuple[str, ...]:
        """The roles ``method`` needs here (empty: none)."""
        return self.roles.get(method) or self.roles.get("*") or ()

    def allows_websocket(self, path: str) -> bool:
        pattern: re.Pattern[str] | None = self.__dict__["_ws"]
        return pattern is not None and pattern.fullmatch(path) is not None


def _by_writes(*roles: str) -> dict[str, tuple[str, ...]]:
    return dict.fromkeys(WRITES, roles)


#: The public API of onair (docs/contracts.md, "gateway prefixes").
ROUTES: Final[tuple[Route, ...]] = (
    # auth: the token issuer. Login, signup and refresh ignore any (possibly expired) access token;
    # the rest (me, logout) gets the identity when a valid one is sent. Auth alone sees the raw token.
    Route("/.well-known/jwks.json", "auth", auth="public", exact=True, methods=READ),
    Route("/.well-known/openid-configuration", "auth", auth="public", exact=True, methods=READ),
    Route("/auth/login", "auth", auth="public", exact=True, forward_authorization=True, retries=0),
    Route("/auth/signup", "auth", auth="public", exact=True, forward_authorization=True, retries=0),
    Route("/auth/refresh", "auth", auth="public", exact=True, forward_authorization=True, retries=0),
    Route("/auth", "auth", auth="optional", forward_authorization=True),
    # liveapi: a streamer's own channel (read and write side); writes need the streamer role
    Route("/channels", "liveapi", auth="required", roles=_by_writes("streamer", "admin")),
    # media: encoders connect with their publish key (the service checks it), not a user token
    Route(
        "/ingest",
        "media",
        auth="public",
        websocket=r"/ingest/[^/]+",
        ws_max_message=4 * MiB,
        body_limit=64 * MiB,
        timeout_s=30.0,
        openapi=False,
    ),
    Route("/media", "media", auth="required"),
    # public reads: the live directory, search
    Route("/live", "liveinfo", auth="optional"),
    Route("/search", "search", auth="optional", timeout_s=5.0),
    # chat: rooms are readable by anyone, posting needs a user (the service decides);
    # follows and notifications are per user
    Route("/chat", "chat", auth="optional", websocket=r"/chat/[^/]+/ws"),
    Route("/follows", "chat", auth="required"),
    Route("/notify", "chat", auth="required"),
    # wallet: money; every call is a user's
    Route("/wallet", "wallet", auth="required", timeout_s=15.0),
    # bff: the pages' composed data
    Route("/bff", "bff", auth="optional"),
    # web: pages and static files, the fallback for GET/HEAD
    Route("/", "web", auth="public", methods=READ, openapi=False),
)


class RouteTable:
    """Finds the route of a path: the longest matching prefix (an index by first segment)."""

    def __init__(self, routes: Iterable[Route] = ROUTES) -> None:
        self.routes = tuple(routes)
        prefixes = [r.prefix for r in self.routes]
        duplicates = {p for p in prefixes if prefixes.count(p) > 1}
        if duplicates:
            raise ValueError(f"duplicate route prefixes: {sorted(duplicates)}")
        self.fallback = next((r for r in self.routes if r.prefix == "/"), None)
        self._index: dict[str, list[Route]] = {}
        for route in self.routes:
            if route.prefix != "/":
                self._index.setdefault(_first_segment(route.prefix), []).append(route)
        for candidates in self._index.values():
            candidates.sort(key=lambda r: -len(r.prefix))

    def match(self, path: str) -> Route | None:
        """The route serving ``path`` (``None``: unknown, answer 404)."""
        for route in self._index.get(_first_segment(path), ()):
            if route.matches(path):
                return route
        if path.startswith("/.well-known/"):
            return None
        return self.fallback

    @property
    def upstreams(self) -> list[str]:
        """Every upstream service the table routes to, in table order."""
        return list(dict.fromkeys(r.upstream for r in self.routes))

    def body_limits(self) -> dict[str, int]:
        """Body limit per prefix, for the skeleton's body-limit middleware (longest prefix wins)."""
        out: dict[str, int] = {}
        for route in self.routes:
            if route.prefix == "/":
                continue
            out[route.prefix] = route.body_limit
            if not route.exact:
                out[route.prefix + "/"] = route.body_limit
        return out


def _first_segment(path: str) -> str:
    end = path.find("/", 1)
    return path[1:] if end < 0 else path[1:end]
