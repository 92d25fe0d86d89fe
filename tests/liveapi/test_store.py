"""liveapi's SQL rules on SQLite and PostgreSQL: versions, concurrent writes, what counts as logged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from onair.db import create_engine, migrate, session_factory
from onair_services.liveapi.store import ChannelExists, ChannelNotFound, ChannelStore, cutoff, key_digest

OPTIONS = {"adult": False, "chat_mode": "open", "visibility": "public"}


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[ChannelStore]:
    engine = create_engine(database_url)
    await migrate(engine, "onair_services.liveapi:migrations")
    try:
        yield ChannelStore(session_factory(engine))
    finally:
        await engine.dispose()


async def test_create_is_once_per_channel_and_owner(store: ChannelStore) -> None:
    write = await store.create("alice", "u-alice", "hi", ["a"], OPTIONS)
    assert write.channel.version == 1 and write.changed == ("publish_key", "title", "tags", "options")
    assert write.publish_key is not None and write.channel.key_sha256 == key_digest(write.publish_key)
    with pytest.raises(ChannelExists):
        await store.create("alice", "u-other", "again", [], OPTIONS)
    with pytest.raises(ChannelExists):  # one channel per owner
        await store.create("alice2", "u-alice", "again", [], OPTIONS)
    with pytest.raises(ChannelNotFound):
        await store.change("nobody", title="x")


async def test_concurrent_writes_each_get_their_own_version(store: ChannelStore) -> None:
    await store.create("bob", "u-bob", "t0", [], OPTIONS)
    writes = await asyncio.gather(*(store.change("bob", title=f"t{i}") for i in range(1, 9)))
    assert sorted(w.channel.version for w in writes) == list(range(2, 10))
    assert all(w.previous_version == w.channel.version - 1 for w in writes)
    final = await store.get("bob")
    assert final is not None and final.version == 9
    merged = await store.change("bob", options={"visibility": "hidden"})
    assert merged.changed == ("options",) and merged.channel.options == {**OPTIONS, "visibility": "hidden"}
    unchanged = await store.change("bob", options={"visibility": "hidden"}, tags=[])
    assert unchanged.changed == () and unchanged.channel.version == 10


async def test_logged_version_only_advances_over_contiguous_versions(store: ChannelStore) -> None:
    created = await store.create("carol", "u-carol", "t", [], OPTIONS)
    assert await store.mark_logged("carol", 1, created.previous_version)
    lost = await store.change("carol", title="events lost")  # version 2: never acknowledged
    acked = await store.change("carol", title="events acked")  # version 3
    assert not await store.mark_logged("carol", acked.channel.version, acked.previous_version)
    channel = await store.get("carol")
    assert channel is not None and channel.logged_version == 1 < channel.version == 3
    assert [c.id for c in await store.lagging(cutoff(-1), 10)] == ["carol"]
    assert await store.lagging(cutoff(3600), 10) == []  # written just now: left to the writer
    # the re-log of the state at version 3 covers version 2 too
    assert await store.mark_relogged("carol", 3)
    assert lost.channel.version == 2 and await store.lagging(cutoff(-1), 10) == []
