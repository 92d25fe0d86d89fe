"""Profiles in Valkey: one key per profile with a TTL (the retention window), an index per app.

Keys (through :class:`onair.clients.ValkeyClient`, so namespaced): ``pgo:p:<app>:<ms>`` holds the
bytes and expires when the profile leaves the retention window; ``pgo:idx:<app>`` is a sorted set of
the app's profile times (entries whose profile expired are dropped when seen); ``pgo:apps`` is the
set of app names. The at-most-N-per-app part of the rule is applied by ``apply_retention``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from onair.clients.valkey import ValkeyClient
from onair.pgo.storage.base import ClientStore, ProfileRef


class ValkeyStore(ClientStore[ValkeyClient]):
    backend = "valkey"

    def _data_key(self, app: str, ms: int) -> str:
        return self.client.key("pgo", "p", app, ms)

    def _index_key(self, app: str) -> str:
        return self.client.key("pgo", "idx", app)

    async def _save(self, app: str, ms: int, data: bytes) -> None:
        ttl_ms = ms + self.retention.window_ms - int(time.time() * 1000)
        if ttl_ms <= 0:
            return  # already outside the retention window: nothing would keep it
        async with self.client.raw.pipeline(transaction=True) as pipe:
            pipe.set(self._data_key(app, ms), data, px=ttl_ms)
            pipe.zadd(self._index_key(app), {str(ms): ms})
            pipe.pexpire(self._index_key(app), self.retention.window_ms * 2)
            pipe.sadd(self.client.key("pgo", "apps"), app)
            await pipe.execute()

    async def _get(self, app: str, ms: int) -> bytes | None:
        data = await self.client.raw.get(self._data_key(app, ms))
        return None if data is None else bytes(data)

    async def _list(self, app: str) -> list[ProfileRef]:
        raw = self.client.raw
        members = await raw.zrange(self._index_key(app), 0, -1)
        if not members:
            return []
        times = [int(m) for m in members]
        async with raw.pipeline(transaction=False) as pipe:
            for ms in times:
                pipe.strlen(self._data_key(app, ms))
            sizes = await pipe.execute()
        gone = [str(ms) for ms, size in zip(times, sizes, strict=True) if not size]
        if gone:
            await raw.zrem(self._index_key(app), *gone)
        return [ProfileRef(app, ms, size) for ms, size in zip(times, sizes, strict=True) if size]

    async def _delete(self, app: str, refs: Sequence[ProfileRef]) -> None:
        async with self.client.raw.pipeline(transaction=True) as pipe:
            pipe.delete(*(self._data_key(app, r.created_at) for r in refs))
            pipe.zrem(self._index_key(app), *(str(r.created_at) for r in refs))
            await pipe.execute()

    async def apps(self) -> list[str]:
        members = await self.client.raw.smembers(self.client.key("pgo", "apps"))  # type: ignore[misc]
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def ping(self) -> bool:
        try:
            return await self.client.ping()
        except Exception:
            return False
