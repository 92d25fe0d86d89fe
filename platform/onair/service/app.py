"""The service skeleton: ``create_service_app(spec, routers)`` gives every service the same shape.

A service declares what it needs in a :class:`ServiceSpec` (a database with its migrations,
Valkey with client tracking, NATS, the log stream, projections, the identity check) and hands over
its routers; the skeleton builds the FastAPI app around them:

* a lifespan that opens the base clients in order (database + migrations, Valkey + tracker, NATS,
  Kafka + the log-stream sink, identity keys), runs the service's own start hooks, starts its
  projection runners and, when ``ONAIR_PROFSTORE_URL`` is set, the profiler; and closes all of it
  in reverse, also when start-up fails half way;
* ``/healthz`` (the process is alive), ``/readyz`` (every dependency answers; 503 with the failing
  checks otherwise) and ``/metrics`` (Prometheus text);
* the request middleware (request id, body limit, metrics, access log), the JSON error model and an
  OpenAPI document that tells the truth (:mod:`onair.service.openapi`).

The running parts are on :class:`Service` (``request.app.state.service``, or the ``service``
dependency), so a service is only its routes and rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from onair.cache import CachedReader, NearCache, Tracker
from onair.clients import KafkaClient, NatsClient, ValkeyClient
from onair.db import create_engine, migrate, session_factory
from onair.logging import configure_logging, get_logger
from onair.logstream import LogStreamSink, Position, Projection, ProjectionRunner
from onair.service.errors import install_error_handlers
from onair.service.middleware import RequestMiddleware
from onair.service.openapi import install_openapi
from onair.service.settings import RuntimeSettings

log = get_logger("onair.service")

Hook = Callable[["Service"], Awaitable[None]]
ReadyCheck = Callable[[], Awaitable[bool | str]]
ProjectionFactory = Callable[["Service"], Sequence[Projection]]


@dataclass(frozen=True)
class ServiceSpec:
    """What one service needs from the platform. Everything is off unless asked for."""

    name: str
    title: str = ""
    description: str = ""
    version: str = "0.1.0"
    #: ``"onair_services.<name>:migrations"``: the service has a database, migrated on start.
    migrations: str | None = None
    #: Valkey (base client); ``tracking`` also opens the invalidation connection for near caches.
    valkey: bool = False
    tracking: bool = False
    #: BCAST prefixes for the tracker (empty: default mode, tracking the keys this process read).
    tracking_prefixes: tuple[str, ...] = ()
    nats: bool = False
    #: Log events go to Kafka (the log-stream sink); projections imply it.
    kafka: bool = False
    projections: ProjectionFactory | None = None
    #: Verify the gateway's identity header (keys from ``ONAIR_IDENTITY_JWKS_URL``).
    identity: bool = True
    #: An ``httpx.AsyncClient`` for calls to other services (``service.http``).
    http_client: bool = False
    #: Larger body limits per path prefix (the default is ``ONAIR_MAX_BODY_BYTES``).
    body_limits: dict[str, int] = field(default_factory=dict)
    access_log: bool = False
    #: Statuses every operation can answer besides its own (documented in OpenAPI).
    common_errors: tuple[int, ...] = ()


class HealthBody(BaseModel):
    status: str
    service: str


class ReadyBody(BaseModel):
    status: str
    service: str
    checks: dict[str, str]


class Service:
    """The running parts of one service process; ``request.app.state.service``."""

    def __init__(self, spec: ServiceSpec, settings: RuntimeSettings) -> None:
        self.spec = spec
        self.name = spec.name
        self.settings = settings
        self.engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self.valkey: ValkeyClient | None = None
        self.tracker: Tracker | None = None
        self.nats: NatsClient | None = None
        self.kafka: KafkaClient | None = None
        self.sink: LogStreamSink | None = None
        self.runners: dict[str, ProjectionRunner] = {}
        self.identity_keys: Any = None  # onair.auth.JWKSCache
        self.identity_verifier: Any = None  # onair.auth.IdentityVerifier
        self.http: httpx.AsyncClient | None = None
        self.state: dict[str, Any] = {}  # the service's own objects (readers, bridges, ...)
        # Served by /metrics after the default registry (a service that keeps its own registry).
        self.metrics_registries: list[CollectorRegistry] = []
        self.started = False
        self.app: FastAPI | None = None
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []
        self._hooks_stopped = False
        self._checks: dict[str, ReadyCheck] = {}
        self.optional_checks: set[str] = set()  # reported by /readyz, not required to be ready
        self._tasks: list[asyncio.Task[Any]] = []
        self._readers: list[CachedReader] = []
        self.log = get_logger(f"onair.{spec.name}")

    # -- what routes use -------------------------------------------------------------------------
    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._sessions is None:
            raise RuntimeError(f"{self.name} has no database (ServiceSpec.migrations is not set)")
        return self._sessions

    def session(self) -> AsyncSession:
        return self.sessions()

    async def log_event(
        self, event: str, *, category: str, entity: str, timeout_s: float = 2.0, **fields: Any
    ) -> Position | None:
        """Log an event (it goes to Kafka) and return its position once the broker has it.

        Returns None when the broker did not acknowledge in time: the event is spooled and will
        be delivered, only its position is unknown (read-your-writes then falls back to waiting).
        """
        if self.sink is None:
            self.log.info(event, category=category, entity=entity, **fields)
            return None
        from onair.logstream import PositionUnavailable

        try:
            return await self.sink.log_event(
                self.log, event, category=category, entity=entity, timeout_s=timeout_s, **fields
            )
        except PositionUnavailable:
            return None

    def cached_reader(
        self, name: str, *, near: NearCache | None = None, ttl_s: int = 3600, near_enabled: bool = True
    ) -> CachedReader:
        """A :class:`CachedReader` on the process's one tracker (call from a start hook)."""
        if self.valkey is None or self.tracker is None:
            raise RuntimeError(f"{self.name}: a cached reader needs ServiceSpec(valkey=True, tracking=True)")
        reader = CachedReader(
            self.valkey,
            self.tracker,
            near=near,
            ttl_s=ttl_s,
            name=f"{self.name}.{name}",
            near_enabled=near_enabled,
        )
        self._readers.append(reader)
        return reader

    # -- what the service plugs in ---------------------------------------------------------------
    def on_start(self, hook: Hook) -> Hook:
        """Run ``hook(service)`` after the platform parts started (before projections and traffic)."""
        self._on_start.append(hook)
        return hook

    def on_stop(self, hook: Hook) -> Hook:
        """Run ``hook(service)`` at shutdown, before the platform parts close (reverse order)."""
        self._on_stop.append(hook)
        return hook

    def ready_check(self, name: str, check: ReadyCheck, *, required: bool = True) -> None:
        """Add a readiness check: returns True/"ok" when ready, False or a reason when not.

        ``required=False``: reported in ``/readyz`` but the service stays ready when it fails (a
        dependency whose outage the service handles by itself, e.g. behind a circuit breaker)."""
        self._checks[name] = check
        if required:
            self.optional_checks.discard(name)
        else:
            self.optional_checks.add(name)

    def background(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Run a task for the life of the service (cancelled at shutdown; a crash is logged)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(f"{self.name}:{name}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error("background task crashed", task=task.get_name(), error=repr(task.exception()))

    # -- readiness -------------------------------------------------------------------------------
    async def readiness(self) -> dict[str, str]:
        checks: dict[str, ReadyCheck] = {}
        if self.engine is not None:
            checks["database"] = self._db_ready
        if self.valkey is not None:
            checks["valkey"] = self._valkey_ready
        if self.tracker is not None:
            checks["valkey_tracking"] = self._tracking_ready
        if self.nats is not None:
            checks["nats"] = self._nats_ready
        checks.update(self._checks)
        names = list(checks)
        results = await asyncio.gather(*(_run_check(checks[n]) for n in names))
        return dict(zip(names, results, strict=True))

    async def _db_ready(self) -> bool:
        assert self.engine is not None
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def _valkey_ready(self) -> bool:
        assert self.valkey is not None
        return await self.valkey.ping()

    async def _tracking_ready(self) -> bool | str:
        assert self.tracker is not None
        return True if self.tracker.ready else "invalidation connection down"

    async def _nats_ready(self) -> bool | str:
        assert self.nats is not None
        try:
            return True if self.nats.raw.is_connected else "disconnected"
        except RuntimeError:
            return "not started"

    # -- lifecycle -------------------------------------------------------------------------------
    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Start everything, yield, stop everything (reverse order), also when start-up fails."""
        spec, s = self.spec, self.settings
        async with AsyncExitStack() as stack:
            if spec.migrations:
                self.engine = create_engine(s.database_url, pool_size=s.database_pool_size)
                stack.push_async_callback(self.engine.dispose)
                if s.migrate_on_start:
                    await migrate(self.engine, spec.migrations)
                self._sessions = session_factory(self.engine)
            if spec.valkey or spec.tracking:
                self.valkey = await stack.enter_async_context(ValkeyClient(s.valkey_url))
                if spec.tracking:
                    prefixes = [self.valkey.key(p) for p in spec.tracking_prefixes] or None
                    self.tracker = Tracker(self.valkey, prefixes=prefixes)
                    await stack.enter_async_context(self.tracker)
                    stack.callback(self._close_readers)
            if spec.nats:
                self.nats = await stack.enter_async_context(NatsClient(s.nats_url, name=self.name))
            if self.kafka is not None:
                await stack.enter_async_context(self.kafka)
            if self.sink is not None:
                await self.sink.start()
                stack.push_async_callback(self.sink.close)
            if spec.identity:
                await self._start_identity(stack)
            if spec.http_client:
                self.http = httpx.AsyncClient(
                    timeout=httpx.Timeout(5.0, connect=2.0),
                    limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                )
                stack.push_async_callback(self.http.aclose)
            self._hooks_stopped = False
            stack.push_async_callback(self._stop_hooks)
            for hook in self._on_start:
                await hook(self)
            if spec.projections is not None:
                await self._start_projections(stack)
            stack.push_async_callback(self._cancel_tasks)
            # At shutdown the service's stop hooks run first, while its background tasks, its
            # projections and every client still run (e.g. closing live sessions with a log event
            # before another instance's reaper would); the push above covers a failed start-up.
            stack.push_async_callback(self._stop_hooks)
            self._start_profiler(stack)
            self.started = True
            self.log.info("service started", service=self.name)
            try:
                yield
            finally:
                self.started = False
                self.log.info("service stopping", service=self.name)

    async def _start_identity(self, stack: AsyncExitStack) -> None:
        from onair.auth import IdentityVerifier, JWKSCache

        self.identity_keys = JWKSCache(self.settings.identity_jwks_url)
        await stack.enter_async_context(self.identity_keys)
        self.identity_verifier = IdentityVerifier(self.identity_keys)
        if self.app is not None:  # where onair.auth's FastAPI dependencies look for it
            self.app.state.identity_verifier = self.identity_verifier

    async def _start_projections(self, stack: AsyncExitStack) -> None:
        assert self.spec.projections is not None
        if self.engine is None or self.kafka is None:
            raise RuntimeError(f"{self.name}: projections need a database (ServiceSpec.migrations)")
        for projection in self.spec.projections(self):
            runner = ProjectionRunner(self.kafka, self.engine, projection)
            await runner.start()
            stack.push_async_callback(runner.stop)
            self.runners[projection.name] = runner

    def _start_profiler(self, stack: AsyncExitStack) -> None:
        url = self.settings.profstore_url
        if not url or not self.settings.profiling:
            return
        from onair.pgo.profiler import ProfileUploader, http_sink

        token = self.settings.profstore_token.get_secret_value() if self.settings.profstore_token else None
        uploader = ProfileUploader(
            http_sink(url, self.name, token),
            interval_s=max(self.settings.profile_interval_s, self.settings.profile_duration_s),
            duration_s=self.settings.profile_duration_s,
        )
        uploader.start()
        stack.push_async_callback(uploader.stop)
        self.state["profiler"] = uploader

    async def _stop_hooks(self) -> None:
        if self._hooks_stopped:  # once per run, whichever of the two pushes comes first
            return
        self._hooks_stopped = True
        for hook in reversed(self._on_stop):
            try:
                await hook(self)
            except Exception as exc:
                self.log.warning("stop hook failed", hook=getattr(hook, "__name__", "?"), error=repr(exc))

    async def _cancel_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    def _close_readers(self) -> None:
        for reader in self._readers:
            reader.close()
        self._readers.clear()


async def _run_check(check: ReadyCheck) -> str:
    try:
        async with asyncio.timeout(2.0):
            result = await check()
    except Exception as exc:
        return f"failed: {type(exc).__name__}: {exc}"[:200]
    if result is True or result == "ok":
        return "ok"
    return str(result) if result else "not ready"


def create_service_app(
    spec: ServiceSpec,
    routers: Sequence[APIRouter] = (),
    *,
    settings: RuntimeSettings | None = None,
    setup: Callable[[Service], None] | None = None,
    configure_logs: bool = True,
) -> FastAPI:
    """The FastAPI app of one service (see the module docstring).

    ``setup(service)`` runs now, before the app serves: register start/stop hooks, readiness
    checks and state there. ``configure_logs=False`` leaves the process's logging as it is (tests
    that build several apps in one process).
    """
    settings = settings or RuntimeSettings()
    service = Service(spec, settings)
    if spec.kafka or spec.projections is not None:
        # The sink exists before logging is configured (it is one of its processors); it starts
        # sending when the lifespan starts.
        service.kafka = KafkaClient(settings.kafka_bootstrap, client_id=spec.name)
        service.sink = LogStreamSink(
            service.kafka, spool_dir=Path(settings.spool_dir) / spec.name, service=spec.name
        )
    if configure_logs:
        configure_logging(spec.name, settings.log_level, sinks=[service.sink] if service.sink else ())
    os.environ.setdefault("ONAIR_SERVICE_NAME", spec.name)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with service.run():
            yield

    app = FastAPI(
        title=spec.title or f"onair {spec.name}",
        description=spec.description,
        version=spec.version,
        lifespan=lifespan,
    )
    app.state.service = service
    service.app = app
    install_error_handlers(app)
    _add_probes(app, service)
    for router in routers:
        app.include_router(router)
    if setup is not None:
        setup(service)
    access = settings.access_log if settings.access_log is not None else spec.access_log
    app.add_middleware(
        RequestMiddleware,
        service=spec.name,
        max_body_bytes=settings.max_body_bytes,
        limits=spec.body_limits,
        access_log=access,
    )
    install_openapi(app, spec)
    return app


def _add_probes(app: FastAPI, service: Service) -> None:
    @app.get("/healthz", tags=["probes"], response_model=HealthBody, summary="The process is alive")
    async def healthz() -> HealthBody:
        return HealthBody(status="ok", service=service.name)

    @app.get(
        "/readyz",
        tags=["probes"],
        response_model=ReadyBody,
        summary="Every dependency answers",
        responses={503: {"model": ReadyBody, "description": "A dependency is not ready (see checks)"}},
    )
    async def readyz() -> Response:
        if not service.started:
            return JSONResponse(
                ReadyBody(status="starting", service=service.name, checks={}).model_dump(), 503
            )
        checks = await service.readiness()
        ok = all(v == "ok" for k, v in checks.items() if k not in service.optional_checks)
        body = ReadyBody(status="ready" if ok else "not_ready", service=service.name, checks=checks)
        return JSONResponse(body.model_dump(), 200 if ok else 503)

    @app.get(
        "/metrics",
        tags=["probes"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Metrics"}
        },
    )
    async def metrics() -> Response:
        body = b"".join(generate_latest(r) for r in (REGISTRY, *service.metrics_registries))
        return Response(body, media_type=CONTENT_TYPE_LATEST)


async def service_of(request: Request) -> Service:
    """The running :class:`Service` of the app serving ``request`` (a FastAPI dependency).

    ``async`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop
    per request for a dictionary lookup."""
    svc: Service = request.app.state.service
    return svc
