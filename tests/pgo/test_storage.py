"""Every storage backend passes the same contract: dir, Valkey (real server), S3 (moto server mode)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from onair.clients import S3Client, ValkeyClient
from onair.pgo.storage import (
    DirectoryStore,
    InvalidAppName,
    ProfileNotFound,
    ProfileRef,
    ProfileStore,
    RetentionPolicy,
    S3Store,
    ValkeyStore,
)

HOUR = 3_600_000


def now() -> int:
    return int(time.time() * 1000)


@pytest.fixture(params=["dir", "valkey", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProfileStore]:
    retention = RetentionPolicy(window_ms=24 * HOUR, max_per_app=3)
    s: ProfileStore
    if request.param == "dir":
        s = DirectoryStore(tmp_path / "profiles", retention)
    elif request.param == "valkey":
        url = request.getfixturevalue("valkey_url")
        s = ValkeyStore(ValkeyClient(url, namespace=f"t{uuid.uuid4().hex[:8]}"), retention, own_client=True)
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        client = S3Client(endpoint, bucket=f"pgo-{uuid.uuid4().hex[:8]}", prefix="pgo")
        s = S3Store(client, retention, own_client=True)
    async with s:
        yield s


async def test_save_get_list_newest_first(store: ProfileStore) -> None:
    t = now()
    ref = await store.save("edge", t - 3000, b"one")
    assert ref == ProfileRef("edge", t - 3000, 3)
    assert ref.name == f"edge/{t - 3000}.pb.gz"
    await store.save("edge", datetime.fromtimestamp((t - 2000) / 1000, UTC), b"two")
    await store.save("edge", t - 1000, b"three")
    await store.save("other", t - 1000, b"not edge's")  # keys include the app
    assert await store.get("edge", t - 3000) == b"one"
    assert await store.get("other", t - 1000) == b"not edge's"
    refs = await store.list("edge")
    assert [r.created_at for r in refs] == [t - 1000, t - 2000, t - 3000]
    assert [r.size for r in refs] == [5, 3, 3]
    assert sorted(await store.apps()) == ["edge", "other"]
    assert await store.ping()


async def test_ranges_are_half_open(store: ProfileStore) -> None:
    t = now()
    for i in range(5):
        await store.save("api", t - 5000 + i * 1000, f"p{i}".encode())
    got = await store.get_range("api", t - 4000, t - 2000)
    assert [(r.created_at, d) for r, d in got] == [(t - 3000, b"p2"), (t - 4000, b"p1")]
    assert [r.created_at for r in await store.list("api", t - 4000, limit=2)] == [t - 1000, t - 2000]


async def test_delete_one_and_range_delete_only_the_range(store: ProfileStore) -> None:
    t = now()
    for i in range(5):
        await store.save("api", t - 5000 + i * 1000, b"x")
    await store.save("web", t - 3000, b"y")
    assert await store.delete("api", t - 5000)
    assert not await store.delete("api", t - 5000)
    with pytest.raises(ProfileNotFound):
        await store.get("api", t - 5000)
    # The original's range delete had its filter inverted: check what survives.
    assert await store.delete_range("api", t - 4000, t - 2000) == 2
    assert [r.created_at for r in await store.list("api")] == [t - 1000, t - 2000]
    assert await store.get("web", t - 3000) == b"y"  # another app's profile at the same time stays


async def test_save_replaces_same_app_and_time(store: ProfileStore) -> None:
    t = now()
    await store.save("api", t, b"first")
    await store.save("api", t, b"second")
    assert await store.get("api", t) == b"second"
    assert len(await store.list("api")) == 1


async def test_retention_keeps_window_and_newest_n(store: ProfileStore) -> None:
    t = now()
    inside = [t - i * 1000 for i in range(5)]  # 5 inside the window, max 3 kept
    for ms in inside:
        await store.save("edge", ms, b"in")
    old = t - 25 * HOUR
    if store.backend != "valkey":  # Valkey never stores what its TTL would already have expired
        await store.save("edge", old, b"old")
    await store.save("solo", t - 10, b"s")
    deleted = await store.apply_retention(t)
    assert deleted == (2 if store.backend == "valkey" else 3)
    assert [r.created_at for r in await store.list("edge")] == inside[:3]  # newest first kept
    assert len(await store.list("solo")) == 1


async def test_unsafe_app_names_are_refused(store: ProfileStore) -> None:
    for bad in ["../etc", "a/b", "", ".hidden", "x" * 200, "a b", "..", "a\\b"]:
        with pytest.raises(InvalidAppName):
            await store.save(bad, now(), b"x")
        with pytest.raises(InvalidAppName):
            await store.list(bad)


async def test_invalid_times_are_refused(store: ProfileStore) -> None:
    with pytest.raises(ValueError):
        await store.save("api", -1, b"x")
    with pytest.raises(ValueError):
        await store.save("api", datetime(2026, 1, 1), b"x")  # naive
    with pytest.raises(ValueError):
        await store.list("api", 10, 5)


async def test_valkey_ttl_is_the_retention_window(valkey_url: str) -> None:
    client = ValkeyClient(valkey_url, namespace=f"t{uuid.uuid4().hex[:8]}")
    async with ValkeyStore(client, RetentionPolicy(window_ms=HOUR, max_per_app=5)) as s:
        t = now()
        await s.save("edge", t - HOUR // 2, b"x")
        ttl = await client.raw.pttl(client.key("pgo", "p", "edge", t - HOUR // 2))
        assert HOUR // 2 - 5000 < ttl <= HOUR // 2
    await client.close()


def test_directory_layout(tmp_path: Path) -> None:
    import asyncio

    async def go() -> None:
        async with DirectoryStore(tmp_path) as s:
            await s.save("edge", 1_700_000_000_123, b"x")
            (tmp_path / "edge" / "junk.txt").write_text("ignored")

            assert [r.created_at for r in await s.list("edge")] == [1_700_000_000_123]

    asyncio.run(go())
    assert (tmp_path / "edge" / "1700000000123.pb.gz").read_bytes() == b"x"
