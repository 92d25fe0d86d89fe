"""CachedReader(near_enabled=False): plain cache-aside on Valkey (what a benchmark compares against)."""

from onair.cache import CachedReader

from .helpers import Db, Stack


async def test_without_the_near_cache_every_read_asks_valkey_and_sees_writes(stack: Stack) -> None:
    db = Db()
    reader: CachedReader = await stack.reader(near_enabled=False)
    key = reader.client.key("switch")
    db.rows[key] = 1
    assert await reader.get(key, db.loader(key)) == {"v": 1}  # miss: loaded, filled into Valkey
    calls = reader.valkey_calls
    for _ in range(5):
        assert await reader.get(key, db.loader(key)) == {"v": 1}
    assert reader.valkey_calls == calls + 5  # one GET per read, nothing served locally
    assert len(reader.near) == 0 and reader.near.hits == 0 and db.loads == 1
    # reads are not tracked: the server keeps nothing for this client, and a write is seen at once
    db.rows[key] = 2
    await reader.invalidate(key)
    assert await reader.get(key, db.loader(key)) == {"v": 2}
    assert db.loads == 2
