"""The profstore service in-process: uploads (valid, malformed, too large, unauthorised), listing,
the merged profile and its cache, deletes, retention, the HTML view, health and metrics."""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from onair.fanout.app import running_server
from onair.pgo import pprof
from onair.pgo.storage import DirectoryStore, RetentionPolicy
from onair_services.profstore.app import create_app
from onair_services.profstore.settings import ProfstoreSettings

from .profiles import DATA, gz, make_profile

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def settings(tmp_path: Path, **kw: object) -> ProfstoreSettings:
    base: dict[str, object] = {"dir": tmp_path, "token": TOKEN, "max_upload_bytes": 64 * 1024}
    base.update(kw)
    return ProfstoreSettings(**base)  # type: ignore[arg-type]


async def client_for(s: ProfstoreSettings) -> tuple[httpx.AsyncClient, DirectoryStore]:
    store = DirectoryStore(s.dir, RetentionPolicy(window_ms=3_600_000, max_per_app=4))
    await store.start()
    app = create_app(profstore=s, store=store)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://profstore"), store


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    client, _ = await client_for(settings(tmp_path))
    async with client:
        yield client


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_upload_list_get_and_merged(api: httpx.AsyncClient, tmp_path: Path) -> None:
    a = (DATA / "a.pb.gz").read_bytes()
    b = (DATA / "b.pb.gz").read_bytes()
    t = int(time.time() * 1000)
    r = await api.post("/v1/profiles/burn", content=a, headers=AUTH, params={"at": t - 2000})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == f"burn/{t - 2000}.pb.gz" and r.json()["samples"] > 0
    r = await api.post("/v1/profiles/burn", content=b, headers=AUTH, params={"at": t - 1000})
    assert r.status_code == 201
    listing = (await api.get("/v1/profiles/burn")).json()["profiles"]
    assert [p["created_at"] for p in listing] == [t - 1000, t - 2000]
    assert (await api.get(f"/v1/profiles/burn/{t - 2000}")).content == a
    r = await api.get("/v1/profiles/burn/merged", params={"from": "1h", "limit": 32})
    assert r.status_code == 200 and r.headers["x-onair-profiles"] == "2"
    merged = pprof.loads(r.content)
    go_merged = pprof.loads((DATA / "merged.pb.gz").read_bytes())
    want = {n: s.flat for n, s in pprof.function_totals(go_merged, 1).items()}
    assert {n: s.flat for n, s in pprof.function_totals(merged, 1).items()} == want
    # limit=1 merges only the newest
    r = await api.get("/v1/profiles/burn/merged", params={"limit": 1})
    assert r.headers["x-onair-profiles"] == "1"
    assert pprof.function_totals(pprof.loads(r.content), 1) == pprof.function_totals(pprof.loads(b), 1)


async def test_merged_is_cached_until_a_new_profile_arrives(api: httpx.AsyncClient) -> None:
    p = gz(make_profile([(["f", "main"], [1, 10])]))
    assert (await api.post("/v1/profiles/app1", content=p, headers=AUTH)).status_code == 201
    r1 = await api.get("/v1/profiles/app1/merged")
    r2 = await api.get("/v1/profiles/app1/merged")
    assert r1.content == r2.content
    metrics = (await api.get("/metrics")).text
    assert 'profstore_merges_total{cache="hit"} 1.0' in metrics
    assert 'profstore_merges_total{cache="miss"} 1.0' in metrics
    assert (await api.post("/v1/profiles/app1", content=p, headers=AUTH)).status_code == 201
    r3 = await api.get("/v1/profiles/app1/merged")
    assert r3.headers["x-onair-profiles"] == "2"
    assert pprof.function_totals(pprof.loads(r3.content), 1)["f"].flat == 20


async def test_same_millisecond_uploads_are_both_kept(api: httpx.AsyncClient) -> None:
    p = gz(make_profile([(["f"], [1, 10])]))
    t = int(time.time() * 1000)
    for _ in range(3):
        assert (
            await api.post("/v1/profiles/dup", content=p, headers=AUTH, params={"at": t})
        ).status_code == 201
    assert [x["created_at"] for x in (await api.get("/v1/profiles/dup")).json()["profiles"]] == [
        t + 2,
        t + 1,
        t,
    ]


def _truncated() -> bytes:
    return gz(make_profile([(["f", "main"], [1, 10])] * 50))[:-30]


MALFORMED = [
    ("empty", b"", 400, "empty"),
    ("not_gzip", b"this is not gzip at all", 400, "not_gzip"),
    ("not_pprof", gzip.compress(b"\x00\xff\x00 some text" * 20), 400, "not_pprof"),
    ("truncated", None, 400, "truncated"),
    ("corrupt", b"\x1f\x8b\x08\x00" + b"\xff" * 60, 400, "corrupt"),
    ("too_large", b"\x1f\x8b" + b"\x00" * (64 * 1024 + 1), 413, "too_large"),
    ("gzip_bomb", gzip.compress(b"\x00" * (8 << 20)), 413, "too_large"),
    ("inconsistent", None, 400, "inconsistent"),
]


@pytest.mark.parametrize(("case", "body", "status", "error"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_uploads_are_refused_and_nothing_is_stored(
    tmp_path: Path, case: str, body: bytes | None, status: int, error: str
) -> None:
    if case == "truncated":
        body = _truncated()
    elif case == "inconsistent":
        p = make_profile([(["f", "main"], [1, 10])])
        p.sample[0].location_id.append(77)
        body = gz(p)
    assert body is not None
    client, _ = await client_for(settings(tmp_path, max_decompressed_bytes=1 << 20))
    async with client:
        r = await client.post("/v1/profiles/app", content=body, headers=AUTH)
        assert r.status_code == status, r.text
        assert r.json()["error"] == error and r.json()["detail"]
        assert (await client.get("/v1/profiles/app")).json()["profiles"] == []
    assert stored_files(tmp_path) == []


async def test_tokens_protect_writes(tmp_path: Path) -> None:
    p = gz(make_profile([(["f"], [1, 10])]))
    client, _ = await client_for(settings(tmp_path))
    async with client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = await client.post("/v1/profiles/app", content=p, headers=headers)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert (await client.delete("/v1/profiles/app", params={"from": 0, "to": "now"})).status_code == 401
        assert (await client.get("/v1/profiles/app")).status_code == 200  # reads open by default
    # No token configured: writes refused unless explicitly allowed (dev).
    client, _ = await client_for(settings(tmp_path / "n", token=None))
    async with client:
        r = await client.post("/v1/profiles/app", content=p)
        assert r.status_code == 403 and r.json()["error"] == "writes_disabled"
    client, _ = await client_for(settings(tmp_path / "d", token=None, allow_anonymous=True))
    async with client:
        assert (await client.post("/v1/profiles/app", content=p)).status_code == 201
    client, _ = await client_for(settings(tmp_path / "r", protect_reads=True))
    async with client:
        assert (await client.get("/v1/profiles/app")).status_code == 401
        assert (await client.get("/v1/profiles/app", headers=AUTH)).status_code == 200
    assert stored_files(tmp_path / "n") == []


# Input the schema forbids is the skeleton's 422 naming the field; the 400s left are the rules a
# schema cannot express (to before from, at outside the retention window), documented in OpenAPI.
@pytest.mark.parametrize(
    ("method", "url", "params", "status", "error", "field"),
    [
        ("GET", "/v1/profiles/..%2Fetc", {}, 422, "invalid_request", "path.app"),
        ("POST", "/v1/profiles/bad%20name", {}, 422, "invalid_request", "path.app"),
        ("GET", "/v1/profiles/app", {"from": "yesterday-ish"}, 422, "invalid_request", "query.from"),
        ("GET", "/v1/profiles/app", {"from": "2h", "to": "3h"}, 400, "invalid_range", None),
        ("GET", "/v1/profiles/app/merged", {"limit": "0"}, 422, "invalid_request", "query.limit"),
        ("GET", "/v1/profiles/app/merged", {"limit": "many"}, 422, "invalid_request", "query.limit"),
        ("GET", "/v1/profiles/app/merged", {}, 404, "no_profiles", None),
        ("GET", "/v1/profiles/app/notanumber", {}, 422, "invalid_request", "path.created_at"),
        ("DELETE", "/v1/profiles/app", {"from": "1h"}, 422, "invalid_request", "query.to"),
        ("DELETE", "/v1/profiles/app", {"from": "1h", "to": "2h"}, 400, "invalid_range", None),
        ("POST", "/v1/profiles/app", {"at": "99999999999999"}, 400, "invalid_time", None),
        ("POST", "/v1/profiles/app", {"at": "1000"}, 400, "invalid_time", None),
        ("GET", "/nope", {}, 404, "not_found", None),
    ],
)
async def test_bad_requests_get_json_errors(
    api: httpx.AsyncClient, method: str, url: str, params: dict, status: int, error: str, field: str | None
) -> None:
    r = await api.request(method, url, params=params, headers=AUTH, content=b"")
    assert r.status_code == status, r.text
    assert r.json()["error"] == error and "detail" in r.json()
    if field is not None:
        assert field in [f["field"] for f in r.json()["fields"]]


async def test_times_before_1970_and_odd_durations_are_answered(api: httpx.AsyncClient) -> None:
    # Found by the contract check: these used to answer 500 (a negative time, an infinite duration).
    for params in ({"from": "1900-01-01T00:00:00Z"}, {"from": "0s"}, {"from": "999999999.999999w"}):
        r = await api.get("/v1/profiles/app", params=params)
        assert r.status_code == 200 and r.json()["profiles"] == [], (params, r.text)
    too_long = await api.get("/v1/profiles/app", params={"from": "9" * 400 + "s"})
    assert too_long.status_code == 422 and too_long.json()["fields"][0]["field"] == "query.from"


async def test_delete_one_and_range(api: httpx.AsyncClient) -> None:
    p = gz(make_profile([(["f"], [1, 10])]))
    t = int(time.time() * 1000)
    for i in range(4):
        await api.post("/v1/profiles/app", content=p, headers=AUTH, params={"at": t - 4000 + i * 1000})
    assert (await api.delete(f"/v1/profiles/app/{t - 4000}", headers=AUTH)).status_code == 204
    assert (await api.delete(f"/v1/profiles/app/{t - 4000}", headers=AUTH)).status_code == 404
    r = await api.delete("/v1/profiles/app", params={"from": t - 3000, "to": t - 1000}, headers=AUTH)
    assert r.json() == {"deleted": 2}
    assert [x["created_at"] for x in (await api.get("/v1/profiles/app")).json()["profiles"]] == [t - 1000]


async def test_retention_job_applies_the_rule(tmp_path: Path) -> None:
    s = settings(tmp_path)
    store = DirectoryStore(tmp_path, RetentionPolicy(window_ms=3_600_000, max_per_app=2))
    await store.start()
    app = create_app(profstore=s, store=store)
    t = int(time.time() * 1000)
    for ms in (t - 7_200_000, t - 3000, t - 2000, t - 1000):
        await store.save("app", ms, b"x")
    assert await app.state.profstore.retention_once() == 2
    assert [r.created_at for r in await store.list("app")] == [t - 1000, t - 2000]


async def test_view_health_metrics(api: httpx.AsyncClient) -> None:
    await api.post("/v1/profiles/burn", content=(DATA / "a.pb.gz").read_bytes(), headers=AUTH)
    r = await api.get("/v1/profiles/burn/view")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "crypto/sha256.block" in html and "Top functions" in html and "class=b" in html
    assert "<script" not in html and "http" not in html.replace('href="merged"', "")
    index = (await api.get("/")).text
    assert "/v1/profiles/burn/view" in index
    assert (await api.get("/v1/apps")).json() == {"apps": ["burn"]}
    health = await api.get("/healthz")
    assert health.json() == {"status": "ok", "service": "profstore"}  # the skeleton's probe
    assert "profstore_uploads_total" in (await api.get("/metrics")).text


async def test_readyz_checks_the_store(tmp_path: Path) -> None:
    # /healthz says the process is alive; /readyz (the skeleton's, with the lifespan run) checks
    # the store — what /healthz did before profstore moved onto the skeleton.
    store = DirectoryStore(tmp_path / "profiles")
    app = create_app(profstore=settings(tmp_path), store=store)
    async with running_server(app, lifespan="on") as url, httpx.AsyncClient(base_url=url) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "service": "profstore", "checks": {"store": "ok"}}
        (tmp_path / "profiles").rename(tmp_path / "gone")  # the store's folder is gone
        not_ready = await client.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["checks"] == {"store": "not ready"}


async def test_incompatible_stored_profiles_give_409(api: httpx.AsyncClient) -> None:
    cpu = gz(make_profile([(["f"], [1, 10])]))
    heap = gz(make_profile([(["f"], [1, 10])], types=[("alloc_objects", "count"), ("alloc_space", "bytes")]))
    await api.post("/v1/profiles/mixed", content=cpu, headers=AUTH)
    await api.post("/v1/profiles/mixed", content=heap, headers=AUTH)
    r = await api.get("/v1/profiles/mixed/merged")
    assert r.status_code == 409 and r.json()["error"] == "incompatible"


async def test_merge_budget_bounds_the_profiles_read(tmp_path: Path) -> None:
    a = (DATA / "a.pb.gz").read_bytes()
    client, _ = await client_for(settings(tmp_path, max_merge_input_bytes=len(a) * 2 + 10))
    async with client:
        t = int(time.time() * 1000)
        for i in range(4):
            r = await client.post("/v1/profiles/big", content=a, headers=AUTH, params={"at": t - 10 + i})
            assert r.status_code == 201
        r = await client.get("/v1/profiles/big/merged")
        assert r.status_code == 200 and r.headers["x-onair-profiles"] == "2"
        assert r.headers["x-onair-newest"] == str(t - 7)


def test_openapi_says_what_the_settings_make_true(tmp_path: Path) -> None:
    doc = create_app(profstore=settings(tmp_path), configure_logs=False).openapi()
    upload = doc["paths"]["/v1/profiles/{app}"]["post"]
    assert upload["requestBody"]["content"]["application/octet-stream"]["schema"] == {
        "type": "string",
        "format": "binary",
    }
    assert {"201", "400", "401", "413", "422", "503"} == set(upload["responses"])
    assert upload["security"] == [{"BearerAuth": []}]
    params = {p["name"]: p for p in doc["paths"]["/v1/profiles/{app}"]["delete"]["parameters"]}
    assert params["from"]["required"] and params["to"]["required"]  # a range delete needs both
    assert params["app"]["schema"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
    listing = {p["name"]: p["schema"] for p in doc["paths"]["/v1/profiles/{app}/merged"]["get"]["parameters"]}
    assert listing["limit"]["maximum"] == 256 and listing["limit"]["minimum"] == 1
    assert "security" not in doc["paths"]["/v1/profiles/{app}"]["get"]  # reads are open
    view_404 = doc["paths"]["/v1/profiles/{app}/view"]["get"]["responses"]["404"]
    assert list(view_404["content"]) == ["application/json"]  # errors are JSON on the HTML route
    # No token: writes are refused 403 (documented, no security); protect_reads: reads need it.
    closed = create_app(profstore=settings(tmp_path, token=None), configure_logs=False).openapi()
    upload = closed["paths"]["/v1/profiles/{app}"]["post"]
    assert "403" in upload["responses"] and "401" not in upload["responses"] and "security" not in upload
    guarded = create_app(
        profstore=settings(tmp_path, protect_reads=True, max_limit=10), configure_logs=False
    ).openapi()
    read = guarded["paths"]["/v1/profiles/{app}/merged"]["get"]
    assert read["security"] == [{"BearerAuth": []}] and "401" in read["responses"]
    assert {p["name"]: p["schema"] for p in read["parameters"]}["limit"]["maximum"] == 10
