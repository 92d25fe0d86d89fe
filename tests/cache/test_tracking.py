"""Invalidation across independent clients, BCAST prefixes, null invalidation, dropped connections."""

import asyncio

import pytest
import valkey.asyncio

from onair.cache import NearCache

from .helpers import Db, Stack, wait_until


@pytest.mark.parametrize("protocol", [2, 3])
async def test_write_in_one_client_invalidates_the_other(stack: Stack, protocol: int) -> None:
    db = Db()
    a = await stack.reader(tracker_kwargs={"protocol": protocol})
    b = await stack.reader(tracker_kwargs={"protocol": protocol})
    assert a.tracker.client_id != b.tracker.client_id
    key = a.client.key("item", 1)
    db.rows[key] = 1
    assert await a.get(key, db.loader(key)) == {"v": 1}  # loader, fills Valkey
    assert await b.get(key, db.loader(key)) == {"v": 1}  # Valkey, tracked -> near
    calls = b.valkey_calls
    for _ in range(5):
        assert await b.get(key, db.loader(key)) == {"v": 1}
    assert b.valkey_calls == calls  # served locally
    assert key in b.near

    db.rows[key] = 2
    await a.publish(key, {"v": 2})
    await wait_until(lambda: key not in b.near)
    assert await b.get(key, db.loader(key)) == {"v": 2}
    assert b.metrics.invalidations._value.get() >= 1

    # tombstone write: the next read loads from the database
    db.rows[key] = 3
    await wait_until(lambda: key in b.near or b.near.get(key) is not None)
    loads = db.loads
    await a.invalidate(key)
    await wait_until(lambda: key not in b.near)
    assert await b.get(key, db.loader(key)) == {"v": 3}
    assert db.loads == loads + 1


@pytest.mark.parametrize("protocol", [2, 3])
async def test_bcast_prefix_invalidates_keys_never_read(stack: Stack, protocol: int) -> None:
    writer = await stack.client()
    prefix = writer.key("hot", "")
    got: list[list[str] | None] = []
    tracker = await stack.tracker(prefixes=[prefix], protocol=protocol)
    assert tracker.mode == "bcast"
    tracker.add_listener(got.append)
    await writer.raw.set(writer.key("cold", "x"), b"1")  # outside the prefix
    await writer.raw.set(writer.key("hot", "x"), b"1")  # inside, never read by the tracker
    await wait_until(lambda: any(keys and writer.key("hot", "x") in keys for keys in got))
    assert not any(keys and writer.key("cold", "x") in keys for keys in got)

    reader = await stack.reader(tracker)
    key = writer.key("hot", "y")
    await writer.raw.set(key, reader.codec.encode("old"))
    assert await reader.get(key) == "old"
    assert key in reader.near
    await writer.raw.set(key, reader.codec.encode("new"))
    await wait_until(lambda: key not in reader.near)
    assert await reader.get(key) == "new"


async def test_null_invalidation_flushes_everything(stack: Stack) -> None:
    reader = await stack.reader()
    writer = await stack.client()
    keys = [reader.client.key("f", i) for i in range(3)]
    for k in keys:
        await writer.raw.set(k, reader.codec.encode(k))
        assert await reader.get(k) == k
    assert len(reader.near) == 3
    flushes = reader.tracker.flushes
    # FLUSHDB of another (empty) database: the server still sends a null invalidation to every
    # tracking client, and the other tests' keys in db 0 survive.
    other_db = valkey.asyncio.Valkey.from_url(stack.url.rsplit("/", 1)[0] + "/15")
    try:
        await other_db.flushdb()
    finally:
        await other_db.aclose()
    await wait_until(lambda: reader.tracker.flushes > flushes)
    assert len(reader.near) == 0
    assert await reader.get(keys[0]) == keys[0]  # db 0 untouched: read again from Valkey


async def test_killed_invalidation_connection_flushes_then_recovers(stack: Stack) -> None:
    reader = await stack.reader()
    admin = await stack.client()
    key = reader.client.key("k")
    await admin.raw.set(key, reader.codec.encode("v1"))
    assert await reader.get(key) == "v1"
    assert key in reader.near
    old_id, connects = reader.tracker.client_id, reader.tracker.connects
    await admin.raw.execute_command("CLIENT", "KILL", "ID", old_id)
    await wait_until(lambda: reader.tracker.connects > connects and reader.tracker.ready)
    assert reader.tracker.client_id != old_id
    assert key not in reader.near  # flushed on the drop
    # the data connections were re-tracked against the new invalidation connection
    assert await reader.get(key) == "v1"
    assert key in reader.near
    await admin.raw.set(key, reader.codec.encode("v2"))
    await wait_until(lambda: key not in reader.near)
    assert await reader.get(key) == "v2"


async def test_silent_invalidation_connection_is_noticed_by_ping(stack: Stack) -> None:
    tracker = await stack.tracker(ping_interval_s=0.1, ping_timeout_s=0.3)
    reader = await stack.reader(tracker, near=NearCache(ttl_s=600))
    admin = await stack.client()
    key = reader.client.key("p")
    await admin.raw.set(key, reader.codec.encode(1))
    assert await reader.get(key) == 1
    flushes = tracker.flushes
    # CLIENT PAUSE ALL stops the server answering anyone (the PING included): a silent connection.
    await admin.raw.execute_command("CLIENT", "PAUSE", 1500, "ALL")
    await wait_until(lambda: tracker.flushes > flushes, timeout_s=5)
    assert key not in reader.near
    await wait_until(lambda: tracker.ready, timeout_s=10)
    assert await reader.get(key) == 1
    assert key in reader.near


async def test_two_readers_share_one_tracker(stack: Stack) -> None:
    tracker = await stack.tracker()
    r1 = await stack.reader(tracker)
    r2 = await stack.reader(tracker)
    writer = await stack.client()
    key = writer.key("shared")
    await writer.raw.set(key, r1.codec.encode("a"))
    assert await r1.get(key) == "a" and await r2.get(key) == "a"
    await writer.raw.set(key, r1.codec.encode("b"))
    await wait_until(lambda: key not in r1.near and key not in r2.near)
    assert await asyncio.gather(r1.get(key), r2.get(key)) == ["b", "b"]
