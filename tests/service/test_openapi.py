"""The skeleton's OpenAPI pass on routes of every kind (no servers needed: the document is built
from the routes), and the merge of several services' documents into the gateway's public one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, create_model

from onair.auth.fastapi import CurrentIdentity, MaybeIdentity, require_role
from onair.service import RuntimeSettings, ServiceSpec, answers, create_service_app, responses
from onair.service.openapi import BEARER_SCHEME, IDENTITY_SCHEME, merge_openapi

ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


class Channel(BaseModel):
    id: str
    title: str


@answers(429)
async def rate_limited() -> None:
    """A dependency that may refuse (documented wherever it is used)."""


def router() -> APIRouter:
    r = APIRouter(prefix="/live")

    @r.get("/{channel}", responses=responses(404))
    async def get_channel(channel: str, caller: MaybeIdentity) -> Channel:
        return Channel(id=channel, title="t")

    @r.put("/{channel}", dependencies=[Depends(rate_limited)])
    async def put_channel(channel: str, body: Channel, caller: CurrentIdentity) -> Channel:
        return body

    @r.delete("/{channel}", status_code=204, dependencies=[Depends(require_role("admin"))])
    async def delete_channel(channel: str) -> None:
        return None

    @r.get("/{channel}/page", response_class=HTMLResponse, responses=responses(404))
    async def page(channel: str) -> HTMLResponse:
        return HTMLResponse("<p>hi</p>")

    @r.post(
        "/{channel}/upload",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def upload(channel: str, request: Request) -> Response:
        return Response(str(len(await request.body())), media_type="text/plain")

    @r.get("/search/all")
    async def search(q: Annotated[str, Query(max_length=10)] = "") -> list[Channel]:
        return []

    return r


def doc_of(spec: ServiceSpec, *routers: APIRouter, tmp: Path) -> dict[str, Any]:
    app = create_service_app(
        spec, list(routers), settings=RuntimeSettings(spool_dir=tmp), configure_logs=False
    )
    return app.openapi()


@pytest.fixture
def doc(tmp_path: Path) -> dict[str, Any]:
    return doc_of(ServiceSpec(name="liveinfo", valkey=True), router(), tmp=tmp_path)


def test_identity_routes_document_401_403_and_security(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    optional = paths["/live/{channel}"]["get"]
    assert optional["security"] == [{IDENTITY_SCHEME: []}, {}]  # anonymous welcome, bad identity 401
    assert {"200", "401", "404", "422", "503"} == set(optional["responses"])
    required = paths["/live/{channel}"]["put"]
    assert required["security"] == [{IDENTITY_SCHEME: []}]
    assert {"401", "413", "422", "429", "503"} <= set(required["responses"])  # 429 from the dependency
    role = paths["/live/{channel}"]["delete"]
    assert {"401", "403"} <= set(role["responses"]) and role["security"] == [{IDENTITY_SCHEME: []}]
    assert "401" not in paths["/live/search/all"]["get"]["responses"]
    assert "security" not in paths["/live/search/all"]["get"]


def test_one_identity_scheme_the_one_onair_auth_declares(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert set(schemes) == {IDENTITY_SCHEME, BEARER_SCHEME}
    assert (
        schemes[IDENTITY_SCHEME]["name"] == "X-Onair-Identity" and schemes[IDENTITY_SCHEME]["in"] == "header"
    )
    assert schemes[BEARER_SCHEME] == {**schemes[BEARER_SCHEME], "type": "http", "scheme": "bearer"}


def test_errors_are_json_even_on_html_routes(doc: dict[str, Any]) -> None:
    page = doc["paths"]["/live/{channel}/page"]["get"]["responses"]
    assert list(page["200"]["content"]) == ["text/html"]
    assert page["404"]["content"] == ERROR and page["422"]["content"] == ERROR


def test_raw_uploads_document_413(doc: dict[str, Any]) -> None:
    upload = doc["paths"]["/live/{channel}/upload"]["post"]
    assert upload["requestBody"]["content"]["application/octet-stream"]["schema"]["format"] == "binary"
    assert {"413", "422"} <= set(upload["responses"])


def test_probes_have_their_own_answers_only(tmp_path: Path) -> None:
    doc = doc_of(ServiceSpec(name="x", valkey=True, common_errors=(429,)), router(), tmp=tmp_path)
    assert set(doc["paths"]["/healthz"]["get"]["responses"]) == {"200"}
    assert set(doc["paths"]["/metrics"]["get"]["responses"]) == {"200"}
    assert list(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert set(doc["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}
    assert "429" in doc["paths"]["/live/search/all"]["get"]["responses"]  # common_errors elsewhere


async def test_unreadable_body_is_the_validation_answer(tmp_path: Path) -> None:
    app = create_service_app(
        ServiceSpec(name="x", identity=False),
        [router()],
        settings=RuntimeSettings(spool_dir=tmp_path),
        configure_logs=False,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
        r = await client.put(
            "/live/a", content=b'{"id": "\x80"}', headers={"content-type": "application/json"}
        )
        assert r.status_code == 422 and r.json()["error"] == "invalid_request"
        assert r.json()["fields"][0]["field"] == "body" and "unreadable" in r.json()["detail"]


# -- merge ----------------------------------------------------------------------------------------------


class Item(BaseModel):
    id: int


# A schema named "Channel" like liveinfo's, with other fields (another service's model).
WalletChannel = create_model("Channel", balance=(int, ...))


def other_router() -> APIRouter:
    r = APIRouter(prefix="/wallet")

    @r.get("/me")
    async def me(caller: CurrentIdentity) -> WalletChannel:  # type: ignore[valid-type]
        return WalletChannel(balance=1)

    @r.get("/items/{item_id}", responses=responses(404))
    async def item(item_id: int) -> Item:
        return Item(id=item_id)

    return r


def test_merge_builds_one_public_document(doc: dict[str, Any], tmp_path: Path) -> None:
    wallet = doc_of(ServiceSpec(name="wallet", migrations=None), other_router(), tmp=tmp_path)
    merged = merge_openapi({"/live": doc, "/wallet/": wallet}, title="onair public API")
    paths = merged["paths"]
    assert "/healthz" not in paths and "/metrics" not in paths  # probes are not public
    assert {"/live/{channel}", "/wallet/me", "/wallet/items/{item_id}"} <= set(paths)
    # identity -> the user's bearer token; optional stays optional
    assert paths["/wallet/me"]["get"]["security"] == [{BEARER_SCHEME: []}]
    assert paths["/live/{channel}"]["get"]["security"] == [{BEARER_SCHEME: []}, {}]
    assert set(merged["components"]["securitySchemes"]) == {BEARER_SCHEME}
    # tags, service marks and unique operation ids
    op = paths["/wallet/me"]["get"]
    assert op["tags"] == ["wallet"] and op["x-onair-service"] == "wallet"
    ids = [o["operationId"] for item in paths.values() for o in item.values()]
    assert len(ids) == len(set(ids)) and all(i.startswith(("liveinfo_", "wallet_")) for i in ids)
    # gateway answers on every operation
    assert all(
        {"429", "502", "503", "504"} <= set(o["responses"]) for item in paths.values() for o in item.values()
    )
    # the two Channel schemas are kept apart, references follow
    schemas = merged["components"]["schemas"]
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/WalletChannel" and "balance" in schemas["WalletChannel"]["properties"]
    assert "title" in schemas["Channel"]["properties"] and "ErrorBody" in schemas
    _all_refs_resolve(merged)


def test_merge_refuses_two_owners_of_one_route(doc: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="documented by both"):
        merge_openapi({"/live": doc, "/live/": {**doc, "info": {"title": "onair other"}}})


def test_merged_document_is_usable_by_schemathesis(doc: dict[str, Any], tmp_path: Path) -> None:
    import schemathesis

    wallet = doc_of(ServiceSpec(name="wallet"), other_router(), tmp=tmp_path)
    merged = merge_openapi({"/live": doc, "/wallet/": wallet})
    schema = schemathesis.openapi.from_dict(merged)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) == sum(len(item) for item in merged["paths"].values())


def _all_refs_resolve(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                assert ref.removeprefix("#/components/schemas/") in schemas, ref
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
