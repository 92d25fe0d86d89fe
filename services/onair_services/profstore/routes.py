"""profstore's HTTP API: upload, list, merge, view, delete — its constraints written in the schema.

The router is built per settings (:func:`make_router`): the largest ``limit``, the upload size and
which routes need the bearer token are settings, and the OpenAPI document says exactly what the
running service accepts. Validation errors are the skeleton's 422; the 400s left are the rules a
schema cannot say (``to`` before ``from``, an upload that is not a gzip pprof, ``at`` outside the
retention window), each documented on its operation.

(No ``from __future__ import annotations`` here: FastAPI reads the parameter types of handlers
defined inside :func:`make_router`, whose ``Annotated`` aliases are local to it.)
"""

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Security
from fastapi.responses import HTMLResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from onair.pgo.storage.base import APP_RE, FOREVER, ProfileNotFound
from onair.pgo.times import TIME_PATTERN, now_ms, parse_time_ms
from onair.service import ApiError, answers, responses
from onair_services.profstore.settings import ProfstoreSettings
from onair_services.profstore.view import render_index

if TYPE_CHECKING:
    from onair_services.profstore.app import Profstore

# Uploads may carry a creation time at most this far in the future (clock skew).
MAX_FUTURE_MS = 5 * 60 * 1000
BINARY = "application/octet-stream"
TIME_TEXT = (
    "unix milliseconds, 'now', a duration meaning that long ago (90s, 24h, 1h30m, 7d; 0s is now), "
    "or RFC 3339 with an offset (2026-11-27T08:00:00Z); times before 1970 count as 0"
)

AppName = Annotated[
    str,
    Path(
        pattern=APP_RE.pattern,
        max_length=128,
        description="Application name: 1-128 letters, digits, '.', '_' or '-', starting with a "
        "letter or digit",
        examples=["edge"],
    ),
]
CreatedAt = Annotated[
    int, Path(ge=0, le=FOREVER, description="Creation time of the profile, unix milliseconds")
]


class Uploaded(BaseModel):
    app: str
    created_at: int = Field(description="Unix milliseconds (+1 ms per upload already stored at that time)")
    name: str = Field(description="'<app>/<created_at>.pb.gz'")
    size: int = Field(description="Bytes stored (the gzip body)")
    samples: int


class ProfileItem(BaseModel):
    created_at: int
    name: str
    size: int


class ProfileList(BaseModel):
    app: str
    profiles: list[ProfileItem] = Field(description="Newest first")


class AppList(BaseModel):
    apps: list[str]


class Deleted(BaseModel):
    deleted: int


_INVALID_RANGE = "`invalid_range`: `to` is before `from`"
_BAD_UPLOAD = (
    "The body is not a usable gzip pprof profile (`empty`, `not_gzip`, `corrupt`, `truncated`, "
    "`not_pprof`, `inconsistent`), or `at` is outside [now - retention, now + 5 min] (`invalid_time`)"
)
_MERGED_HEADERS = {
    "X-Onair-Profiles": {"description": "Profiles merged", "schema": {"type": "integer"}},
    "X-Onair-Skipped": {
        "description": "Stored profiles left out (unreadable)",
        "schema": {"type": "integer"},
    },
    "X-Onair-Newest": {
        "description": "created_at of the newest profile merged",
        "schema": {"type": "integer"},
    },
}


def token_dependency(settings: ProfstoreSettings, *, write: bool) -> Callable[..., Awaitable[None]] | None:
    """The dependency that guards writes (or, with ``protect_reads``, reads); None when open."""
    token = settings.token.get_secret_value() if settings.token else ""
    if not write and not settings.protect_reads:
        return None
    if not token:
        if settings.allow_anonymous:
            return None

        @answers(403)
        async def writes_disabled() -> None:
            raise ApiError(
                403,
                "writes_disabled",
                "no token configured: set ONAIR_PROFSTORE_TOKEN "
                "(or ONAIR_PROFSTORE_ALLOW_ANONYMOUS=true for dev)",
            )

        return writes_disabled

    bearer = HTTPBearer(
        scheme_name="BearerAuth",
        description="The profstore token (ONAIR_PROFSTORE_TOKEN)",
        auto_error=False,
    )

    async def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> None:
        given = credentials.credentials.strip() if credentials is not None else ""
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(
                401, "unauthorized", "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    require_token.__onair_auth__ = "required"  # type: ignore[attr-defined]  # documents 401 + security
    return require_token


def _guard(dep: Callable[..., Awaitable[None]] | None) -> list[Any]:
    return [Depends(dep)] if dep is not None else []


def _window(start_text: str | None, end_text: str | None) -> tuple[int, int | None]:
    # The texts already matched TIME_PATTERN (422 otherwise), and every text that does parses.
    start = parse_time_ms(start_text) if start_text else 0
    end = parse_time_ms(end_text) if end_text else None
    if end is not None and end < start:
        raise ApiError(400, "invalid_range", f"to ({end}) is before from ({start})")
    return start, end


def make_router(ps: "Profstore") -> APIRouter:
    """The routes of one profstore (``ps``: its store, cache and metrics)."""
    settings = ps.settings
    read = _guard(token_dependency(settings, write=False))
    write = _guard(token_dependency(settings, write=True))
    # Every route touches the store, which may be down (Valkey, S3): 503 with Retry-After.
    router = APIRouter(tags=["profiles"], responses=responses(503))

    From = Annotated[
        str | None,
        Query(alias="from", pattern=TIME_PATTERN, max_length=64, description=f"Window start: {TIME_TEXT}"),
    ]
    To = Annotated[
        str | None,
        Query(pattern=TIME_PATTERN, max_length=64, description=f"Window end (excluded): {TIME_TEXT}"),
    ]
    Limit = Annotated[
        int | None,
        Query(ge=1, le=settings.max_limit, description="At most this many profiles, newest first"),
    ]

    @router.get("/", response_class=HTMLResponse, dependencies=read, summary="Index of the apps (HTML)")
    async def index() -> HTMLResponse:
        return HTMLResponse(render_index(await ps.store.apps()))

    @router.get("/v1/apps", dependencies=read, summary="Apps with stored profiles")
    async def apps() -> AppList:
        return AppList(apps=await ps.store.apps())

    @router.post(
        "/v1/profiles/{app}",
        status_code=201,
        dependencies=write,
        summary="Upload a gzip pprof CPU profile",
        responses=responses(400, s400=_BAD_UPLOAD),
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": f"A gzip-compressed pprof profile, at most {settings.max_upload_bytes} bytes",
                "content": {BINARY: {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def upload(
        app: AppName,
        request: Request,
        at: Annotated[
            int | None,
            Query(
                ge=0,
                le=FOREVER,
                description="Creation time, unix ms (default: now); within the retention window, "
                "at most 5 minutes ahead",
            ),
        ] = None,
    ) -> Uploaded:
        try:
            if at is not None:
                if at > now_ms() + MAX_FUTURE_MS:
                    raise ApiError(400, "invalid_time", "at= is in the future")
                if at < now_ms() - ps.store.retention.window_ms:
                    raise ApiError(400, "invalid_time", "at= is older than the retention window")
            body = await ps.read_body(request)
            return Uploaded(**await ps.upload(app, body, at))
        except ApiError as exc:
            ps.metrics.uploads.labels(exc.error).inc()
            raise

    @router.get(
        "/v1/profiles/{app}",
        dependencies=read,
        summary="List profiles, newest first",
        responses=responses(400, s400=_INVALID_RANGE),
    )
    async def list_profiles(
        app: AppName, start: From = None, to: To = None, limit: Limit = None
    ) -> ProfileList:
        lo, hi = _window(start, to)
        refs = await ps.store.list(app, lo, hi, limit)
        return ProfileList(
            app=app, profiles=[ProfileItem(created_at=r.created_at, name=r.name, size=r.size) for r in refs]
        )

    merged_errors = responses(
        400,
        404,
        409,
        s400=_INVALID_RANGE,
        s404="`no_profiles` in the window",
        s409="Profiles that cannot be merged",
    )

    @router.get(
        "/v1/profiles/{app}/merged",
        dependencies=read,
        summary="The merged profile of the window (default.pgo)",
        response_class=Response,
        responses={
            200: {
                "description": "The merged gzip pprof profile",
                "content": {BINARY: {"schema": {"type": "string", "format": "binary"}}},
                "headers": _MERGED_HEADERS,
            },
            **merged_errors,
        },
    )
    async def merged(app: AppName, start: From = None, to: To = None, limit: Limit = None) -> Response:
        lo, hi = _window(start, to)
        m = await ps.merged(app, lo, hi, limit or settings.default_limit)
        return Response(
            m.data,
            media_type=BINARY,
            headers={
                "Content-Disposition": 'attachment; filename="default.pgo"',
                "X-Onair-Profiles": str(len(m.refs)),
                "X-Onair-Skipped": str(m.skipped),
                "X-Onair-Newest": str(max(r.created_at for r in m.refs)),
            },
        )

    @router.get(
        "/v1/profiles/{app}/view",
        dependencies=read,
        summary="Top functions and a flame graph of the merged profile (HTML)",
        response_class=HTMLResponse,
        responses=merged_errors,
    )
    async def view(app: AppName, start: From = None, to: To = None, limit: Limit = None) -> HTMLResponse:
        lo, hi = _window(start, to)
        m = await ps.merged(app, lo, hi, limit or settings.default_limit)
        return HTMLResponse(await asyncio.to_thread(ps.view, app, m))

    @router.get(
        "/v1/profiles/{app}/{created_at}",
        dependencies=read,
        summary="One stored profile",
        response_class=Response,
        responses={
            200: {
                "description": "The gzip pprof profile",
                "content": {BINARY: {"schema": {"type": "string", "format": "binary"}}},
            },
            **responses(404),
        },
    )
    async def get_one(app: AppName, created_at: CreatedAt) -> Response:
        try:
            data = await ps.store.get(app, created_at)
        except ProfileNotFound:
            raise ApiError(404, "not_found", f"no profile {app}/{created_at}.pb.gz") from None
        return Response(data, media_type=BINARY)

    @router.delete(
        "/v1/profiles/{app}/{created_at}",
        status_code=204,
        dependencies=write,
        summary="Delete one profile",
        response_class=Response,
        responses=responses(404),
    )
    async def delete_one(app: AppName, created_at: CreatedAt) -> Response:
        if not await ps.store.delete(app, created_at):
            raise ApiError(404, "not_found", f"no profile {app}/{created_at}.pb.gz")
        return Response(status_code=204)

    @router.delete(
        "/v1/profiles/{app}",
        dependencies=write,
        summary="Delete the profiles created in [from, to)",
        responses=responses(400, s400=_INVALID_RANGE),
    )
    async def delete_range(
        app: AppName,
        start: Annotated[
            str,
            Query(alias="from", pattern=TIME_PATTERN, max_length=64, description=f"Range start: {TIME_TEXT}"),
        ],
        to: Annotated[
            str, Query(pattern=TIME_PATTERN, max_length=64, description=f"Range end (excluded): {TIME_TEXT}")
        ],
    ) -> Deleted:
        lo, hi = _window(start, to)
        assert hi is not None
        return Deleted(deleted=await ps.store.delete_range(app, lo, hi))

    return router
