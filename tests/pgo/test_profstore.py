"""The profstore service in-process: uploads (valid, malformed, too large, unauthorised), listing,
the merged profile and its cache, deletes, retention, the HTML view, health and metrics."""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

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
    app = create_app(s, store=store)
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


@pytest.mark.parametrize(
    ("method", "url", "params", "error"),
    [
        ("GET", "/v1/profiles/..%2Fetc", {}, "invalid_app"),
        ("POST", "/v1/profiles/bad%20name", {}, "invalid_app"),
        ("GET", "/v1/profiles/app", {"from": "yesterday-ish"}, "invalid_time"),
        ("GET", "/v1/profiles/app", {"from": "2h", "to": "3h"}, "invalid_range"),
        ("GET", "/v1/profiles/app/merged", {"limit": "0"}, "invalid_limit"),
        ("GET", "/v1/profiles/app/merged", {"limit": "many"}, "invalid_limit"),
        ("GET", "/v1/profiles/app/merged", {}, "no_profiles"),
        ("GET", "/v1/profiles/app/notanumber", {}, "invalid_time"),
        ("DELETE", "/v1/profiles/app", {"from": "1h"}, "invalid_range"),
        ("POST", "/v1/profiles/app", {"at": "99999999999999"}, "invalid_time"),
        ("POST", "/v1/profiles/app", {"at": "1000"}, "invalid_time"),
        ("GET", "/nope", {}, "not_found"),
    ],
)
async def test_bad_requests_get_json_errors(
    api: httpx.AsyncClient, method: str, url: str, params: dict, error: str
) -> None:
    r = await api.request(method, url, params=params, headers=AUTH, content=b"")
    assert 400 <= r.status_code < 500
    assert r.json()["error"] == error and "detail" in r.json()


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
    app = create_app(s, store=store)
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
    assert health.json() == {"status": "ok", "backend": "dir"}
    assert "profstore_uploads_total" in (await api.get("/metrics")).text


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
