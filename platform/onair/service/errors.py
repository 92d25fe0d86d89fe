"""The one error model of every onair service: a JSON body, the right status, documented in OpenAPI.

Every error a service answers has the body ``{"error": "<code>", "detail": "<text>", ...}``
(:class:`ErrorBody`; extra fields allowed, e.g. ``fields`` for validation errors). Handlers raise
:class:`ApiError`; :func:`install_error_handlers` maps it, Starlette's HTTP errors (404, 405 with
the ``Allow`` header RFC 9110 requires), request validation errors (422 naming the fields),
read-your-writes errors and backend outages (503 with ``Retry-After``) to that body, and turns
anything unexpected into a logged 500 with the same shape, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from onair.logging import get_logger
from onair.service.routes import allowed_methods

log = get_logger("onair.service.errors")

#: What each status means in every onair API (the text of its OpenAPI response).
STATUS_TEXT: dict[int, str] = {
    400: "Bad request (a malformed header or parameter combination)",
    401: "Not authenticated: no valid identity or token",
    403: "Authenticated, but not allowed to do this",
    404: "Not found",
    405: "Method not allowed (see the Allow header)",
    409: "Conflict with the current state",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid input: the fields named in the body",
    429: "Too many requests (see Retry-After)",
    502: "Bad gateway: the upstream answered with something unusable",
    503: "A backend is unavailable; retry (see Retry-After)",
    504: "The upstream did not answer in time",
}


class FieldError(BaseModel):
    field: str = Field(description="Dotted location of the bad input, e.g. 'body.title' or 'query.limit'")
    message: str


class ErrorBody(BaseModel):
    """The JSON body of every error answer."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="Machine-readable code, e.g. 'not_found', 'invalid_request'")
    detail: str = Field(description="What went wrong, for a human")
    fields: list[FieldError] | None = Field(default=None, description="Validation errors, one per field")


class ApiError(Exception):
    """Raise from a handler: ``raise ApiError(404, "not_found", "no channel 'x'")``."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers) if headers else None
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, **self.extra}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), self.status, headers=self.headers)


class Unavailable(ApiError):
    """A backend the request needs is down: 503 with ``Retry-After``."""

    def __init__(self, what: str, *, retry_after_s: int = 1) -> None:
        super().__init__(
            503,
            "unavailable",
            f"{what} is unavailable; retry shortly",
            headers={"Retry-After": str(retry_after_s)},
        )


def error_json(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"error": error, "detail": detail}, status, headers=dict(headers or {}))


def responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the error statuses an operation can return.

    ``@router.get("/x/{id}", responses=responses(404, 409))``; a description can be given per
    status as ``s409="title already taken"``.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        text = descriptions.get(f"s{status}", STATUS_TEXT.get(status, "Error"))
        out[status] = {"model": ErrorBody, "description": text}
    return out


#: Attribute a dependency carries to say which error statuses it can answer (see :func:`answers`).
ERRORS_MARK = "__onair_errors__"
F = TypeVar("F", bound=Callable[..., Any])


def answers(*statuses: int) -> Callable[[F], F]:
    """Mark a FastAPI dependency with the error statuses it can answer; every route that uses it
    documents them in OpenAPI (``@answers(429)`` on a rate limiter, ``@answers(403)`` on a check)."""

    def mark(fn: F) -> F:
        setattr(fn, ERRORS_MARK, (*getattr(fn, ERRORS_MARK, ()), *statuses))
        return fn

    return mark


def _field_name(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc)


def validation_body(errors: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    fields = [{"field": _field_name(e.get("loc", ())), "message": str(e.get("msg", ""))} for e in errors]
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields) or "invalid request"
    return {"error": "invalid_request", "detail": detail, "fields": fields}


#: Exceptions that mean "a backend is down", answered 503 rather than 500. Services may add more.
UNAVAILABLE_ERRORS: list[type[Exception]] = [ConnectionError, TimeoutError]


def _infra_errors() -> tuple[type[Exception], ...]:
    extra: list[type[Exception]] = []
    try:  # SQLAlchemy: the database is down or the pool is exhausted
        from sqlalchemy import exc as sa_exc

        extra += [
            sa_exc.OperationalError,
            sa_exc.InterfaceError,
            sa_exc.DisconnectionError,
            sa_exc.TimeoutError,
        ]
    except ImportError:  # pragma: no cover
        pass
    try:
        from valkey import exceptions as vexc

        extra += [vexc.ConnectionError, vexc.TimeoutError]
    except ImportError:  # pragma: no cover
        pass
    return (*UNAVAILABLE_ERRORS, *extra)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with :class:`ErrorBody`."""
    from onair.logstream.positions import ReadYourWritesError

    infra = _infra_errors()

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path)) or headers.get(
                "Allow", ""
            )
            return error_json(405, "method_not_allowed", f"{request.method} is not allowed here", headers)
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
            # FastAPI could not read the body (not UTF-8, ...): the same answer as malformed JSON
            return JSONResponse(
                validation_body([{"loc": ("body",), "msg": f"unreadable body: {exc.__cause__}"[:200]}]), 422
            )
        if exc.status_code == 404:
            detail = exc.detail if exc.detail not in (None, "Not Found") else f"no route {request.url.path}"
            return error_json(404, "not_found", str(detail), headers)
        name = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        return error_json(exc.status_code, name, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return JSONResponse(validation_body(exc.errors()), 422)

    @app.exception_handler(ReadYourWritesError)
    async def _ryw(_: Request, exc: ReadYourWritesError) -> Response:
        return JSONResponse(exc.body, exc.status, headers=exc.headers)

    async def _unavailable(request: Request, exc: Exception) -> Response:
        log.warning("backend unavailable", path=request.url.path, error=repr(exc))
        return Unavailable("a backend").response()

    for cls in infra:
        app.add_exception_handler(cls, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error", path=request.url.path, error=repr(exc), exc_info=exc)
        return error_json(500, "internal", "unexpected error; it was logged")
