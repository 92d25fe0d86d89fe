"""profstore: writers (running services) upload pprof CPU profiles, the build downloads one merged
``default.pgo``; a retention job deletes old ones. The two sides never wait for each other.

Routes (every error is a 4xx/5xx with ``{"error": ..., "detail": ...}``):

- ``POST   /v1/profiles/{app}[?at=ms]``            upload (bearer token, size-limited, validated)
- ``GET    /v1/profiles/{app}?from=&to=&limit=``   list, newest first
- ``GET    /v1/profiles/{app}/merged?from=&to=&limit=``  the merged profile (cached per selection)
- ``GET    /v1/profiles/{app}/view?from=&to=&limit=``    top functions and a flame graph (HTML)
- ``GET    /v1/profiles/{app}/{created_at}``       one stored profile
- ``DELETE /v1/profiles/{app}/{created_at}``       delete one
- ``DELETE /v1/profiles/{app}?from=&to=``           delete a range
- ``GET /v1/apps``, ``GET /`` (HTML index), ``GET /healthz``, ``GET /metrics``
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from onair.clients import S3Client, ValkeyClient
from onair.config import ServiceSettings
from onair.logging import configure_logging, get_logger
from onair.pgo import _samples, pprof
from onair.pgo.storage import (
    DirectoryStore,
    InvalidAppName,
    ProfileNotFound,
    ProfileRef,
    ProfileStore,
    RetentionPolicy,
    S3Store,
    ValkeyStore,
    check_app,
)
from onair.pgo.times import now_ms, parse_time_ms
from onair_services.profstore.settings import ProfstoreSettings
from onair_services.profstore.view import render, render_index

log = get_logger("onair.profstore")

# Uploads may carry a creation time at most this far in the future (clock skew).
MAX_FUTURE_MS = 5 * 60 * 1000


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


def make_store(settings: ProfstoreSettings) -> ProfileStore:
    retention = RetentionPolicy(window_ms=int(settings.retention_s * 1000), max_per_app=settings.max_per_app)
    if settings.backend == "valkey":
        return ValkeyStore(ValkeyClient(), retention, own_client=True)
    if settings.backend == "s3":
        return S3Store(S3Client(prefix=settings.s3_prefix), retention, own_client=True)
    return DirectoryStore(settings.dir, retention)


@dataclass
class Merged:
    data: bytes  # gzip pprof
    refs: tuple[ProfileRef, ...]
    skipped: int
    html: str | None = None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.uploads = Counter("profstore_uploads_total", "Uploads by result", ["result"], registry=r)
        self.upload_bytes = Counter("profstore_upload_bytes_total", "Bytes of accepted uploads", registry=r)
        self.merges = Counter(
            "profstore_merges_total", "Merged-profile requests by cache result", ["cache"], registry=r
        )
        self.merge_seconds = Histogram("profstore_merge_seconds", "Time to merge profiles", registry=r)
        self.retention_deleted = Counter("profstore_retention_deleted_total", "Profiles expired", registry=r)
        self.retention_errors = Counter(
            "profstore_retention_errors_total", "Failed retention runs", registry=r
        )


class Profstore:
    """State of one profstore app: store, merged-profile cache, metrics."""

    def __init__(self, settings: ProfstoreSettings, store: ProfileStore) -> None:
        self.settings = settings
        self.store = store
        self.metrics = Metrics()
        self._cache: OrderedDict[tuple[str, tuple[int, ...]], Merged] = OrderedDict()
        self._flights: dict[tuple[str, tuple[int, ...]], asyncio.Future[Merged]] = {}
        self._app_locks: dict[str, asyncio.Lock] = {}

    # -- auth --------------------------------------------------------------------------------------
    def authorize(self, request: Request, *, write: bool) -> None:
        token = self.settings.token.get_secret_value() if self.settings.token else ""
        if not write and not self.settings.protect_reads:
            return
        if not token:
            if self.settings.allow_anonymous:
                return
            raise ApiError(
                403,
                "writes_disabled",
                "no token configured: set ONAIR_PROFSTORE_TOKEN "
                "(or ONAIR_PROFSTORE_ALLOW_ANONYMOUS=true for dev)",
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(
                401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )

    # -- upload ------------------------------------------------------------------------------------
    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, "too_large", f"upload of {declared} bytes exceeds the limit of {limit}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "too_large", f"upload exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def upload(self, app: str, body: bytes, at: int | None) -> dict[str, Any]:
        if not body:
            raise ApiError(400, "empty", "empty body: send a gzip-compressed pprof profile")
        try:
            profile = await asyncio.to_thread(
                pprof.load_raw,  # samples checked as arrays: no message per sample
                body,
                max_bytes=self.settings.max_upload_bytes,
                max_decompressed=self.settings.max_decompressed_bytes,
            )
        except pprof.ProfileError as exc:
            status = 413 if exc.kind == "too_large" else 400
            raise ApiError(status, exc.kind, exc.message) from None
        lock = self._app_locks.setdefault(app, asyncio.Lock())
        async with lock:
            ms = at if at is not None else now_ms()
            taken = {r.created_at for r in await self.store.list(app, ms)}
            while ms in taken:  # two uploads in the same millisecond: both are kept
                ms += 1
            ref = await self.store.save(app, ms, body)
        self.metrics.uploads.labels("ok").inc()
        self.metrics.upload_bytes.inc(len(body))
        log.info("profile stored", app=app, created_at=ms, size=len(body), samples=len(profile))
        return {
            "app": app,
            "created_at": ref.created_at,
            "name": ref.name,
            "size": ref.size,
            "samples": len(profile),
        }

    # -- merge -------------------------------------------------------------------------------------
    async def merged(self, app: str, start: int, end: int | None, limit: int) -> Merged:
        refs = tuple(await self.store.list(app, start, end, limit))
        if not refs:
            raise ApiError(404, "no_profiles", f"no profiles for {app!r} in the requested window")
        key = (app, tuple(r.created_at for r in refs))
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self.metrics.merges.labels("hit").inc()
            return hit
        flight = self._flights.get(key)
        if flight is not None:  # someone is merging this very selection: share the result
            self.metrics.merges.labels("shared").inc()
            return await asyncio.shield(flight)
        fut: asyncio.Future[Merged] = asyncio.get_running_loop().create_future()
        self._flights[key] = fut
        try:
            result = await self._merge(app, refs)
            fut.set_result(result)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody shared it
            raise
        finally:
            self._flights.pop(key, None)
        self.metrics.merges.labels("miss").inc()
        if self.settings.cache_entries:
            # New uploads change the selection, hence the key: older entries of the app are stale.
            for k in [k for k in self._cache if k[0] == app]:
                del self._cache[k]
            self._cache[key] = result
            while len(self._cache) > self.settings.cache_entries:
                self._cache.popitem(last=False)
        return result

    async def _merge(self, app: str, refs: tuple[ProfileRef, ...]) -> Merged:
        blobs: list[tuple[ProfileRef, bytes]] = []
        budget = self.settings.max_merge_input_bytes
        for ref in refs:  # newest first
            if blobs and ref.size and budget - ref.size < 0:
                log.warning("merge budget reached; older profiles left out", app=app, used=len(blobs))
                break
            try:
                data = await self.store.get(app, ref.created_at)
            except ProfileNotFound:  # deleted meanwhile
                continue
            budget -= len(data)
            blobs.append((ref, data))
        if not blobs:
            raise ApiError(404, "no_profiles", f"no profiles for {app!r} in the requested window")
        started = time.perf_counter()
        try:
            data, used, skipped = await asyncio.to_thread(self._merge_sync, app, blobs)
        except pprof.ProfileError as exc:
            raise ApiError(409, exc.kind, f"the stored profiles cannot be merged: {exc.message}") from None
        self.metrics.merge_seconds.observe(time.perf_counter() - started)
        return Merged(data, used, skipped)

    def _merge_sync(
        self, app: str, blobs: list[tuple[ProfileRef, bytes]]
    ) -> tuple[bytes, tuple[ProfileRef, ...], int]:
        parsed: list[tuple[ProfileRef, pprof.RawProfile]] = []
        loaded = pprof.load_raw_all(
            [data for _, data in blobs], max_decompressed=self.settings.max_decompressed_bytes
        )
        for (ref, _), got in zip(blobs, loaded, strict=True):
            if isinstance(got, pprof.ProfileError):  # unreadable or inconsistent: leave it out
                log.warning("stored profile unusable, skipped", app=app, name=ref.name, error=got.message)
            else:
                parsed.append((ref, got))
        if not parsed:
            raise pprof.ProfileError("empty", "none of the stored profiles could be read")
        comment = f"onair profstore: {app}, {len(parsed)} profile(s)"
        merged = pprof.merge_gzip([p for _, p in parsed], comment=comment)
        return merged, tuple(r for r, _ in parsed), len(blobs) - len(parsed)

    def view(self, app: str, m: Merged) -> str:
        if m.html is None:
            profile = pprof.load_raw(m.data, max_bytes=len(m.data), max_decompressed=1 << 40, check=False)
            m.html = render(app, profile, n_profiles=len(m.refs))
        return m.html

    # -- retention ---------------------------------------------------------------------------------
    async def retention_once(self) -> int:
        deleted = await self.store.apply_retention(now_ms())
        self.metrics.retention_deleted.inc(deleted)
        if deleted:
            log.info("retention applied", deleted=deleted)
        return deleted

    async def retention_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.retention_interval_s)
            try:
                await self.retention_once()
            except Exception as exc:
                self.metrics.retention_errors.inc()
                log.warning("retention run failed", error=repr(exc))


def _app_name(app: str) -> str:
    try:
        return check_app(app)
    except InvalidAppName as exc:
        raise ApiError(400, "invalid_app", str(exc)) from None


def _window(request: Request, *, need_both: bool = False) -> tuple[int, int | None]:
    q = request.query_params
    try:
        start = parse_time_ms(q["from"]) if q.get("from") else 0
        end = parse_time_ms(q["to"]) if q.get("to") else None
    except ValueError as exc:
        raise ApiError(400, "invalid_time", str(exc)) from None
    if need_both and (not q.get("from") or not q.get("to")):
        raise ApiError(400, "invalid_range", "a range delete needs both from= and to=")
    if end is not None and end < start:
        raise ApiError(400, "invalid_range", f"to ({end}) is before from ({start})")
    return start, end


def _limit(request: Request, settings: ProfstoreSettings, default: int | None) -> int | None:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= settings.max_limit:
        raise ApiError(400, "invalid_limit", f"limit must be an integer in [1, {settings.max_limit}]")
    return int(raw)


def _ms_path(value: str) -> int:
    if not value.isdigit() or len(value) > 19:
        raise ApiError(400, "invalid_time", f"{value!r} is not unix milliseconds")
    return int(value)


def _warm_up() -> None:
    try:
        log.info("pprof kernels ready", seconds=round(pprof.warm_up(), 3))
    except Exception as exc:  # the first request compiles them instead
        log.warning("pprof kernel warm-up failed", error=repr(exc))


def create_app(settings: ProfstoreSettings | None = None, *, store: ProfileStore | None = None) -> FastAPI:
    """The profstore ASGI app (``onair serve profstore``); backend from ``ONAIR_PROFSTORE_BACKEND``."""
    settings = settings or ProfstoreSettings()
    service = ServiceSettings()
    _samples.avoid_hugepage_stalls()  # merges allocate big numpy arrays (see docs/benchmarks.md)
    if store is None:
        configure_logging("profstore", service.log_level)
    ps = Profstore(settings, store or make_store(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Compile the codec's kernels (or load numba's cache) now, not on the first upload or merge.
        threading.Thread(target=_warm_up, name="profstore-jit-warmup", daemon=True).start()
        await ps.store.start()
        task = asyncio.create_task(ps.retention_loop(), name="profstore-retention")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await ps.store.close()

    app = FastAPI(title="onair profstore", lifespan=lifespan)
    app.state.profstore = ps

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "detail": exc.detail}, exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": name, "detail": str(exc.detail)}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid_request", "detail": str(exc.errors())}, 400)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        ok = await ps.store.ping()
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "backend": ps.store.backend}, 200 if ok else 503
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(ps.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        ps.authorize(request, write=False)
        return HTMLResponse(render_index(await ps.store.apps()))

    @app.get("/v1/apps")
    async def apps(request: Request) -> dict[str, list[str]]:
        ps.authorize(request, write=False)
        return {"apps": await ps.store.apps()}

    @app.post("/v1/profiles/{app}", status_code=201)
    async def upload(app: str, request: Request) -> JSONResponse:
        try:
            ps.authorize(request, write=True)
            name = _app_name(app)
            at_raw = request.query_params.get("at")
            at = None
            if at_raw:
                at = _ms_path(at_raw)
                if at > now_ms() + MAX_FUTURE_MS:
                    raise ApiError(400, "invalid_time", "at= is in the future")
                if at < now_ms() - ps.store.retention.window_ms:
                    raise ApiError(400, "invalid_time", "at= is older than the retention window")
            body = await ps.read_body(request)
            result = await ps.upload(name, body, at)
        except ApiError as exc:
            ps.metrics.uploads.labels(exc.error).inc()
            raise
        return JSONResponse(result, 201)

    @app.get("/v1/profiles/{app}")
    async def list_profiles(app: str, request: Request) -> dict[str, Any]:
        ps.authorize(request, write=False)
        name = _app_name(app)
        start, end = _window(request)
        refs = await ps.store.list(name, start, end, _limit(request, settings, None))
        return {
            "app": name,
            "profiles": [{"created_at": r.created_at, "name": r.name, "size": r.size} for r in refs],
        }

    def _merged_args(app: str, request: Request) -> tuple[str, int, int | None, int]:
        ps.authorize(request, write=False)
        start, end = _window(request)
        limit = _limit(request, settings, settings.default_limit)
        return _app_name(app), start, end, limit or settings.default_limit

    @app.get("/v1/profiles/{app}/merged")
    async def merged(app: str, request: Request) -> Response:
        m = await ps.merged(*_merged_args(app, request))
        return Response(
            m.data,
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": 'attachment; filename="default.pgo"',
                "X-Onair-Profiles": str(len(m.refs)),
                "X-Onair-Skipped": str(m.skipped),
                "X-Onair-Newest": str(max(r.created_at for r in m.refs)),
            },
        )

    @app.get("/v1/profiles/{app}/view", response_class=HTMLResponse)
    async def view(app: str, request: Request) -> HTMLResponse:
        args = _merged_args(app, request)
        m = await ps.merged(*args)
        html = await asyncio.to_thread(ps.view, args[0], m)
        return HTMLResponse(html)

    @app.get("/v1/profiles/{app}/{created_at}")
    async def get_one(app: str, created_at: str, request: Request) -> Response:
        ps.authorize(request, write=False)
        name, ms = _app_name(app), _ms_path(created_at)
        try:
            data = await ps.store.get(name, ms)
        except ProfileNotFound:
            raise ApiError(404, "not_found", f"no profile {name}/{ms}.pb.gz") from None
        return Response(data, media_type="application/octet-stream")

    @app.delete("/v1/profiles/{app}/{created_at}")
    async def delete_one(app: str, created_at: str, request: Request) -> Response:
        ps.authorize(request, write=True)
        name, ms = _app_name(app), _ms_path(created_at)
        if not await ps.store.delete(name, ms):
            raise ApiError(404, "not_found", f"no profile {name}/{ms}.pb.gz")
        return Response(status_code=204)

    @app.delete("/v1/profiles/{app}")
    async def delete_range(app: str, request: Request) -> dict[str, int]:
        ps.authorize(request, write=True)
        name = _app_name(app)
        start, end = _window(request, need_both=True)
        assert end is not None
        return {"deleted": await ps.store.delete_range(name, start, end)}

    return app
