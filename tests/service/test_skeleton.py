"""The service skeleton on real servers: probes, the error model, limits, request ids, OpenAPI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from onair.fanout.app import running_server
from onair.service import RuntimeSettings
from onair.testing import ServerControl

from . import sample


@pytest.fixture
async def api(database_url: str, valkey_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = RuntimeSettings(
        database_url=database_url, valkey_url=valkey_url, spool_dir=tmp_path / "spool", max_body_bytes=2048
    )
    app = sample.create_app(settings)
    async with running_server(app, lifespan="on") as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def test_probes_and_metrics(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok", "service": "sample"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "valkey": "ok", "valkey_tracking": "ok"}
    await api.get("/items/1")
    metrics = await api.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert (
        'onair_http_requests_total{method="GET",route="/items/{item_id}",service="sample",status="404"}'
        in (metrics.text)
    )


async def test_crud_and_error_bodies(api: httpx.AsyncClient) -> None:
    created = await api.post("/items", json={"name": "alpha"})
    assert created.status_code == 201, created.text
    item_id = created.json()["id"]
    assert (await api.get(f"/items/{item_id}")).json() == {"id": item_id, "name": "alpha"}
    dup = await api.post("/items", json={"name": "alpha"})
    assert dup.status_code == 409 and dup.json()["error"] == "taken"
    missing = await api.get("/items/999999")
    assert missing.status_code == 404 and missing.json() == {"error": "not_found", "detail": "no item 999999"}
    no_route = await api.get("/nothing/here")
    assert no_route.status_code == 404 and no_route.json()["error"] == "not_found"


async def test_validation_names_the_field(api: httpx.AsyncClient) -> None:
    bad = await api.post("/items", json={"name": "UPPER"})
    assert bad.status_code == 422
    body = bad.json()
    assert body["error"] == "invalid_request"
    assert [f["field"] for f in body["fields"]] == ["body.name"]
    not_json = await api.post("/items", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["error"] == "invalid_request"
    bad_path = await api.get("/items/abc")
    assert bad_path.status_code == 422 and bad_path.json()["fields"][0]["field"] == "path.item_id"


async def test_method_not_allowed_lists_every_method(api: httpx.AsyncClient) -> None:
    r = await api.put("/items/1", json={})
    assert r.status_code == 405
    assert r.json()["error"] == "method_not_allowed"
    assert r.headers["allow"] == "DELETE, GET, HEAD"


async def test_body_limit(api: httpx.AsyncClient) -> None:
    r = await api.post("/items", content=b"x" * 4096, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the streamed size counts
        for _ in range(8):
            yield b" " * 512

    streamed = await api.post("/items", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


async def test_request_id_is_kept_or_made(api: httpx.AsyncClient) -> None:
    r = await api.get("/healthz", headers={"X-Request-ID": "req-12345678"})
    assert r.headers["x-request-id"] == "req-12345678"
    made = await api.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert made.headers["x-request-id"] != "bad id with spaces" and len(made.headers["x-request-id"]) == 32


async def test_backend_down_is_503_and_readyz_says_which(
    api: httpx.AsyncClient, servers: ServerControl
) -> None:
    assert (await api.get("/counter")).status_code == 200
    servers.stop("valkey")
    down = await api.get("/counter")
    assert down.status_code == 503, down.text
    assert down.json()["error"] == "unavailable" and down.headers["retry-after"] == "1"
    ready = await api.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["valkey"] != "ok"
    servers.start("valkey")
    for _ in range(100):
        if (await api.get("/readyz")).status_code == 200:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("readyz never recovered after Valkey came back")
    assert (await api.get("/counter")).status_code == 200


async def test_openapi_documents_what_really_happens(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/openapi.json")).json()
    paths = doc["paths"]
    create = paths["/items"]["post"]["responses"]
    assert {"201", "409", "413", "422", "503"} <= set(create)
    assert create["422"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ErrorBody"
    assert set(paths["/items/{item_id}"]["get"]["responses"]) == {"200", "404", "422", "503"}
    assert "422" not in paths["/counter"]["get"]["responses"]
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert "503" in paths["/readyz"]["get"]["responses"]
    assert "503" not in paths["/healthz"]["get"]["responses"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert {"OnairIdentity", "BearerAuth"} <= set(doc["components"]["securitySchemes"])


async def test_start_hooks_ran(database_url: str, valkey_url: str, tmp_path: Path) -> None:
    app = sample.create_app(
        RuntimeSettings(database_url=database_url, valkey_url=valkey_url, spool_dir=tmp_path)
    )
    async with running_server(app, lifespan="on"):
        assert app.state.service.state["started"] == ["sample"]  # type: ignore[attr-defined]
    assert app.state.service.valkey._client is None  # type: ignore[attr-defined]  # closed at shutdown
