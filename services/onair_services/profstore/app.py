"""profstore: writers (running services) upload pprof CPU profiles, the build downloads one merged
``default.pgo``; a retention job deletes old ones. The two sides never wait for each other.

Built on the service skeleton (``onair.service``): probes, metrics, the request middleware (the
upload's body limit is ``ONAIR_PROFSTORE_MAX_UPLOAD_BYTES``), the JSON error body and a truthful
OpenAPI document. The profile store is the service's own state: made here, opened in a start hook,
checked by ``/readyz``. Routes (``routes.py``):

- ``POST   /v1/profiles/{app}[?at=ms]``            upload (bearer token, size-limited, validated)
- ``GET    /v1/profiles/{app}?from=&to=&limit=``   list, newest first
- ``GET    /v1/profiles/{app}/merged?from=&to=&limit=``  the merged profile (cached per selection)
- ``GET    /v1/profiles/{app}/view?from=&to=&limit=``    top functions and a flame graph (HTML)
- ``GET    /v1/profiles/{app}/{created_at}``       one stored profile
- ``DELETE /v1/profiles/{app}/{created_at}``       delete one
- ``DELETE /v1/profiles/{app}?from=&to=``           delete a range (both bounds required)
- ``GET /v1/apps``, ``GET /`` (HTML index), ``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json``
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry, Counter, Histogram

from onair.clients import S3Client, ValkeyClient
from onair.logging import get_logger
from onair.pgo import _samples, pprof
from onair.pgo.storage import (
    DirectoryStore,
    ProfileNotFound,
    ProfileRef,
    ProfileStore,
    RetentionPolicy,
    S3Store,
    ValkeyStore,
)
from onair.pgo.times import now_ms
from onair.service import ApiError, RuntimeSettings, Service, ServiceSpec, create_service_app
from onair_services.profstore import routes
from onair_services.profstore.settings import ProfstoreSettings
from onair_services.profstore.view import render

log = get_logger("onair.profstore")

SPEC = ServiceSpec(
    name="profstore",
    title="onair profstore",
    description="The PGO profile store: services upload CPU profiles, builds download one merged "
    "default.pgo.",
    identity=False,  # its own bearer token guards writes (ONAIR_PROFSTORE_TOKEN)
    # The upload route takes larger bodies than the skeleton's default (per settings in create_app).
    body_limits={"/v1/profiles": ProfstoreSettings.model_fields["max_upload_bytes"].default},
)


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


def _warm_up() -> None:
    try:
        log.info("pprof kernels ready", seconds=round(pprof.warm_up(), 3))
    except Exception as exc:  # the first request compiles them instead
        log.warning("pprof kernel warm-up failed", error=repr(exc))


def create_app(
    settings: RuntimeSettings | None = None,
    *,
    profstore: ProfstoreSettings | None = None,
    store: ProfileStore | None = None,
    configure_logs: bool | None = None,
) -> FastAPI:
    """The profstore ASGI app (``onair serve profstore``); backend from ``ONAIR_PROFSTORE_BACKEND``.

    ``store`` replaces the configured backend (tests, the benchmark); the app still starts it in
    its lifespan and closes it at shutdown. Process logging is configured unless a store is given
    (or ``configure_logs`` says otherwise).
    """
    ps_settings = profstore or ProfstoreSettings()
    _samples.avoid_hugepage_stalls()  # merges allocate big numpy arrays (see docs/benchmarks.md)
    ps = Profstore(ps_settings, store or make_store(ps_settings))
    spec = dataclasses.replace(SPEC, body_limits={"/v1/profiles": ps_settings.max_upload_bytes})

    def setup(svc: Service) -> None:
        svc.state["profstore"] = ps
        svc.metrics_registries.append(ps.metrics.registry)

        async def store_ready() -> bool:
            return await ps.store.ping()

        svc.ready_check("store", store_ready)

        @svc.on_start
        async def open_store(svc: Service) -> None:
            # Compile the codec's kernels (or load numba's cache) now, not on the first upload or merge.
            threading.Thread(target=_warm_up, name="profstore-jit-warmup", daemon=True).start()
            await ps.store.start()
            svc.background(ps.retention_loop(), "retention")

        @svc.on_stop
        async def close_store(svc: Service) -> None:
            await ps.store.close()

    app = create_service_app(
        spec,
        [routes.make_router(ps)],
        settings=settings,
        setup=setup,
        configure_logs=store is None if configure_logs is None else configure_logs,
    )
    app.state.profstore = ps
    return app
