"""The contract checker catches each way an API can lie (an app built to lie once per route), and
finds nothing on the same routes told truthfully."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from onair.service import ApiError, RuntimeSettings, ServiceSpec, create_service_app, responses
from onair.service.contract import ContractReport, Finding, check_app, documented_methods

SPEC = ServiceSpec(name="liar", identity=False)


class Count(BaseModel):
    n: int


def liar_router() -> APIRouter:
    router = APIRouter(prefix="/lies")

    @router.get("/status")
    async def undocumented_status() -> Count:
        raise ApiError(409, "conflict", "not in the document")

    @router.get("/crash")
    async def crash() -> Count:
        # A 500 as the skeleton answers an unexpected error (without raising one: the test logging
        # would render its traceback, slowly).
        return JSONResponse({"error": "internal", "detail": "unexpected error"}, 500)  # type: ignore[return-value]

    @router.get("/body")
    async def body_off_schema() -> Count:
        return JSONResponse({"n": "not a number"})  # type: ignore[return-value]

    @router.get("/strict", responses=responses(400))
    async def refuses_what_the_schema_allows(q: Annotated[str, Query(max_length=8)]) -> Count:
        if not q.isdigit():  # a rule only the handler knows
            raise ApiError(422, "invalid_request", "q must be digits")
        return Count(n=int(q))

    @router.get(
        "/lax",
        openapi_extra={
            "parameters": [
                {"name": "n", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 1}}
            ]
        },
    )
    async def accepts_what_the_schema_forbids(request: Request) -> Count:
        return Count(n=len(request.query_params.get("n", "")))

    @router.get("/ctype", responses={200: {"content": {"application/json": {}}}})
    async def wrong_content_type() -> PlainTextResponse:
        return PlainTextResponse("text, not JSON")

    @router.get("/secured", openapi_extra={"security": [{"BearerAuth": []}]}, responses=responses(401))
    async def security_not_enforced() -> Count:
        return Count(n=1)

    return router


def truthful_router() -> APIRouter:
    router = APIRouter(prefix="/lies")

    @router.get("/status", responses=responses(409))
    async def documented_status() -> Count:
        raise ApiError(409, "conflict", "documented")

    @router.get("/strict")
    async def constraint_in_the_schema(q: Annotated[str, Query(pattern="^[0-9]{1,8}$")]) -> Count:
        return Count(n=int(q))

    return router


async def run(app: Any, **kwargs: Any) -> ContractReport:
    return await check_app(app, examples=kwargs.pop("examples", 8), seed=3, **kwargs)


def found(report: ContractReport) -> set[tuple[str, str]]:
    return {(f.operation, f.check) for f in report.findings}


async def test_each_lie_is_found(tmp_path: Path) -> None:
    app = create_service_app(
        SPEC, [liar_router()], settings=RuntimeSettings(spool_dir=tmp_path), configure_logs=False
    )
    report = await run(app)
    got = found(report)
    expected = {
        ("GET /lies/status", "status_code_conformance"),
        ("GET /lies/crash", "not_a_server_error"),
        ("GET /lies/body", "response_schema_conformance"),
        ("GET /lies/strict", "schema_valid_request_accepted"),
        ("GET /lies/lax", "negative_data_rejection"),
        ("GET /lies/ctype", "content_type_conformance"),
        ("GET /lies/secured", "ignored_auth"),
    }
    assert expected <= got, report.describe()
    assert not report.ok
    # Every finding carries a request that reproduces it, credentials redacted.
    crash = next(f for f in report.findings if f.check == "not_a_server_error")
    assert crash.status == 500 and crash.curl.startswith("curl") and "/lies/crash" in crash.curl
    assert report.to_dict()["finding_list"][0]["curl"]


async def test_the_same_routes_told_truthfully_pass(tmp_path: Path) -> None:
    app = create_service_app(
        SPEC, [truthful_router()], settings=RuntimeSettings(spool_dir=tmp_path), configure_logs=False
    )
    report = await run(app)
    assert report.ok, report.describe()
    assert set(report.statuses["GET /lies/status"]["positive"]) == {"409"}
    assert "422" in report.statuses["GET /lies/strict"]["negative"]  # invalid input was sent and refused


async def test_a_plain_app_fails_the_probes() -> None:
    """Without the skeleton: 405 without Allow, and error bodies that are not the JSON error body."""
    app = FastAPI()

    @app.get("/things/{name}")
    async def thing(name: str) -> dict[str, str]:
        return {"name": name}

    @app.exception_handler(StarletteHTTPException)
    async def drop_headers(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, exc.status_code)  # loses Allow

    report = await run(app, examples=2)
    checks = {f.check for f in report.findings if f.mode == "probe"}
    assert {"allow_header", "error_body"} <= checks, report.describe()


async def test_the_skeleton_passes_the_probes(tmp_path: Path) -> None:
    app = create_service_app(
        SPEC, [truthful_router()], settings=RuntimeSettings(spool_dir=tmp_path), configure_logs=False
    )
    report = await run(app, examples=1)
    assert not [f for f in report.findings if f.mode == "probe"], report.describe()


def test_documented_methods_union_every_matching_template() -> None:
    doc = {
        "paths": {
            "/v1/p/{app}/merged": {"get": {}},
            "/v1/p/{app}/{at}": {"get": {}, "delete": {}},
            "/v1/p/{app}": {"post": {}, "parameters": []},
        }
    }
    assert documented_methods(doc, "/v1/p/x/merged") == {"GET", "HEAD", "DELETE"}
    assert documented_methods(doc, "/v1/p/x") == {"POST"}
    assert documented_methods(doc, "/v1/q") == set()


async def test_credentials_are_asked_per_request_and_never_printed(tmp_path: Path) -> None:
    app = create_service_app(
        SPEC, [liar_router()], settings=RuntimeSettings(spool_dir=tmp_path), configure_logs=False
    )
    calls: list[int] = []

    def headers() -> dict[str, str]:
        calls.append(1)
        return {"Authorization": "Bearer very-secret-token"}

    report = await run(app, headers=headers, examples=2)
    assert len(calls) >= report.requests - 20  # asked before (almost) every request
    assert "very-secret-token" not in report.describe()
    assert all("very-secret-token" not in f.curl for f in report.findings)


@pytest.mark.parametrize("finding", [Finding("GET /x", "c", "t", "m", 500, "curl x")])
def test_findings_deduplicate(finding: Finding) -> None:
    from onair.service.contract import _Collector

    report = ContractReport(base_url="http://x", seed=0, examples=1)
    collect = _Collector(report)
    collect.add(finding)
    collect.add(finding)
    assert len(report.findings) == 1 and report.findings[0].count == 2


def test_unreachable_service_is_a_clear_error() -> None:
    from onair.devstack.probes import free_port
    from onair.service.contract import ContractError, check_api

    with pytest.raises(ContractError, match="cannot read"):
        check_api(f"http://127.0.0.1:{free_port()}", examples=1)
