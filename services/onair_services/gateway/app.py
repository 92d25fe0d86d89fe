"""gateway: the app (``onair serve gateway``, port 8080). See docs/gateway.md.

The skeleton gives the probes, metrics, error body, request ids, body limits (per table prefix)
and the access log; ``setup`` plugs the proxy in as the router's fallback, adds the browser
headers and, in the lifespan, builds the proxy's parts: the pooled aiohttp session, the auth
service's JWKS, the revocation list on the process's near cache, the identity signer, the shared
rate limiter and one circuit breaker per upstream.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable

import aiohttp
import orjson
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from onair.auth import IdentitySigner, RevocationList, UserTokenSettings, jwks_document
from onair.cache.tokens import TokenCache
from onair.ratelimit import Policy, SharedRateLimiter
from onair.service import RuntimeSettings, Service, ServiceSpec, create_service_app
from onair.service.middleware import RequestMiddleware
from onair.service.routes import route_paths
from onair_services.gateway import routes
from onair_services.gateway.authn import Authenticator
from onair_services.gateway.headers import BrowserHeaders
from onair_services.gateway.identity_key import IdentityKeyError, load_identity_keys
from onair_services.gateway.openapi import PublicOpenAPI
from onair_services.gateway.proxy import Gateway, GatewayDispatch, GatewayProxy, GuardedProxy, Upstream
from onair_services.gateway.settings import GatewaySettings
from onair_services.gateway.table import ROUTES, Route, RouteTable
from onair_services.registry import ServiceUrls

TABLE = RouteTable(ROUTES)

SPEC = ServiceSpec(
    name="gateway",
    title="onair gateway",
    description="The only public entry: routing, authentication, rate limits, breakers.",
    valkey=True,
    tracking=True,
    tracking_prefixes=("token:", "token-blocked:"),  # the TokenCache's (revoked jtis)
    identity=False,
    access_log=True,
    body_limits=TABLE.body_limits(),
)

#: FastAPI's own docs routes; the gateway serves the combined document at the same paths.
_FASTAPI_DOCS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def create_app(
    settings: RuntimeSettings | None = None,
    *,
    gateway: GatewaySettings | None = None,
    user_tokens: UserTokenSettings | None = None,
    urls: ServiceUrls | None = None,
    routes_table: Iterable[Route] | None = None,
    configure_logs: bool = True,
) -> FastAPI:
    gs = gateway or GatewaySettings()
    tokens = user_tokens or UserTokenSettings()
    table = TABLE if routes_table is None else RouteTable(routes_table)
    spec = SPEC if routes_table is None else dataclasses.replace(SPEC, body_limits=table.body_limits())
    service_urls = urls or ServiceUrls()
    proxy = GatewayProxy()

    def setup(svc: Service) -> None:
        app = svc.app
        assert app is not None
        app.router.routes[:] = [
            r for r in app.router.routes if getattr(r, "path", None) not in _FASTAPI_DOCS or _ours(r)
        ]
        app.router.default = proxy
        app.router.redirect_slashes = False
        app.add_middleware(BrowserHeaders, settings=gs)
        svc.state["proxy"] = proxy

        @svc.on_start
        async def start(svc: Service) -> None:
            assert svc.valkey is not None and svc.tracker is not None
            try:
                keys = load_identity_keys(gs.identity_key_file, gs.state_dir)
            except IdentityKeyError as exc:
                svc.log.error("gateway.identity_key_unusable", error=str(exc))
                raise
            svc.state["identity_jwks"] = orjson.dumps(jwks_document(keys))
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=gs.max_connections,
                    keepalive_timeout=gs.keepalive_timeout_s,
                    ttl_dns_cache=60,
                ),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=gs.connect_timeout_s),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                cookie_jar=aiohttp.DummyCookieJar(),  # never keep one user's cookies for another
                trust_env=False,
            )
            svc.state["session"] = session
            jwks = tokens.jwks_cache()
            await jwks.start()
            svc.state["auth_keys"] = jwks
            token_cache = TokenCache(svc.valkey, svc.tracker)
            await token_cache.start()
            svc.state["token_cache"] = token_cache
            verifier = tokens.verifier(
                jwks, revocations=RevocationList(token_cache, fail_open=gs.revocation_fail_open)
            )
            authenticator = Authenticator(verifier, IdentitySigner(keys[0], ttl_s=gs.identity_ttl_s))
            policies = [
                Policy(name, limit, gs.rate_limit_window_s)
                for name, limit in (("ip", gs.rate_limit_per_ip), ("user", gs.rate_limit_per_user))
                if limit > 0
            ]
            limiter = None
            if policies:
                limiter = SharedRateLimiter(
                    svc.valkey, policies, sync_interval_s=gs.rate_limit_sync_ms / 1000
                )
                await limiter.start()
                svc.state["limiter"] = limiter
            upstreams = {name: Upstream(name, service_urls.of(name), gs) for name in table.upstreams}
            proxy.gateway = Gateway(table, upstreams, gs, authenticator, limiter, session)
            _lean_path(app, svc, proxy, gs)
            svc.state["gateway"] = proxy.gateway
            svc.state["openapi"] = PublicOpenAPI(
                table, {n: u.base for n, u in upstreams.items()}, session, app.openapi, ttl_s=gs.openapi_ttl_s
            )
            _readiness(svc, jwks, upstreams, session, gs)

        @svc.on_stop
        async def stop(svc: Service) -> None:
            app.state.lean_dispatch = None
            proxy.gateway = None
            limiter: SharedRateLimiter | None = svc.state.pop("limiter", None)
            if limiter is not None:
                await limiter.close()
            token_cache: TokenCache | None = svc.state.pop("token_cache", None)
            if token_cache is not None:
                await token_cache.close()
            jwks = svc.state.pop("auth_keys", None)
            if jwks is not None:
                await jwks.close()
            session: aiohttp.ClientSession | None = svc.state.pop("session", None)
            if session is not None:
                await session.close()

    app = create_service_app(
        spec, [routes.router], settings=settings, setup=setup, configure_logs=configure_logs
    )
    app.__class__ = GatewayApp  # a FastAPI still (the skeleton builds the app; see GatewayApp)
    return app


def _lean_path(app: FastAPI, svc: Service, proxy: GatewayProxy, gs: GatewaySettings) -> None:
    """Send proxied requests around FastAPI's own middleware and router (a few tens of
    microseconds a request): the gateway's own paths still go through the whole app; the rest
    gets the same request middleware (request id, body limit, metrics, access log), the browser
    headers and the proxy. Installed in the lifespan, once the app's middleware stack is built."""
    full = app.middleware_stack
    if full is None:
        return
    settings = svc.settings
    lean = RequestMiddleware(
        BrowserHeaders(GuardedProxy(proxy), settings=gs),
        service=svc.spec.name,
        max_body_bytes=settings.max_body_bytes,
        limits=svc.spec.body_limits,
        access_log=settings.access_log if settings.access_log is not None else svc.spec.access_log,
    )
    app.state.lean_dispatch = GatewayDispatch(full, lean, frozenset(route_paths(app)))


class GatewayApp(FastAPI):
    """The gateway's FastAPI app, entered through its dispatch once started: proxied requests go
    straight to the lean path, without FastAPI's per-request entry work (its telemetry check, the
    middleware stack); the gateway's own paths and the lifespan take the usual way."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        dispatch = getattr(self.state, "lean_dispatch", None)
        if dispatch is None or scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await dispatch(scope, receive, send)


def _ours(route: object) -> bool:
    return getattr(route, "endpoint", None) in (routes.openapi, routes.docs)


def _readiness(
    svc: Service,
    jwks: object,
    upstreams: dict[str, Upstream],
    session: aiohttp.ClientSession,
    gs: GatewaySettings,
) -> None:
    """``/readyz``: the auth JWKS loaded (Valkey and its tracking connection are the skeleton's
    checks), and each upstream's ``/healthz`` (liveness, never readiness: a service's readiness
    may depend on the gateway's identity keys, and the gateway's must not depend on it in turn).
    Only ``ready_upstreams`` gate readiness; an outage of the others is the breakers' business."""

    async def auth_keys() -> bool | str:
        return (
            True
            if getattr(jwks, "ready", False)
            else f"auth JWKS not loaded from {getattr(jwks, 'url', '?')}"
        )

    svc.ready_check("auth_jwks", auth_keys)
    for name, upstream in upstreams.items():

        async def alive(upstream: Upstream = upstream) -> bool | str:
            try:
                async with asyncio.timeout(1.0):
                    async with session.get(f"{upstream.base}/healthz") as resp:
                        ok = resp.status == 200
            except (TimeoutError, aiohttp.ClientError) as exc:
                return f"unreachable: {type(exc).__name__}"
            state = upstream.breaker.state
            if not ok:
                return f"/healthz answered {resp.status}"
            return True if state == "closed" else f"reachable, breaker {state}"

        svc.ready_check(f"upstream:{name}", alive, required=name in gs.ready_upstreams)
