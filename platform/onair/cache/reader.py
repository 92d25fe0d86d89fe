"""The read path ``CachedReader.get(key, loader)``: near cache -> Valkey -> loader, and the write path.

* Near-cache hits cost nothing remote. Only values read from Valkey over a *tracked* connection are
  stored, so every stored value is one Valkey promised to announce a change of.
* Everything behind the near cache runs under single-flight per key: a thousand concurrent misses
  make one Valkey read and at most one loader call.
* **Race guard.** Each fetch registers a "fill in progress" record; an invalidation of its key (or
  a flush, or a change of the tracker's epoch: a drop or reconnect) marks it stale, and a stale
  fill is not stored. An invalidation also detaches the key's in-flight single-flight, so a read
  that starts after the invalidation never joins a fetch that began before it.
* **Valkey fills never overwrite newer data.** After a loader call the value is written with
  ``SET NX`` (the key was absent) or ``SET IFEQ <tombstone>`` (the key held the tombstone this
  read saw; Valkey >= 8.1), so a slow loader cannot put back a value older than a later write.
* **Write path.** :meth:`CachedReader.write` commits to the database first, then either publishes
  the new value (``SET``) or replaces it with a tombstone (:meth:`invalidate`); either way Valkey
  invalidates every process's near cache. A tombstone, unlike ``DEL``, is a modification even when
  the key was not cached, so it also defeats fills that loaded before the commit.
* **Valkey down.** Reads go to the loader (still single-flight), nothing is stored in the near
  cache (the tracker flushed it and is not ready), Valkey is retried after ``retry_after_s`` and the
  reader recovers by itself when the server is back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from valkey.exceptions import ConnectionError as ValkeyConnectionError
from valkey.exceptions import ResponseError
from valkey.exceptions import TimeoutError as ValkeyTimeoutError

from onair.cache.codec import Codec
from onair.cache.metrics import CacheMetrics
from onair.cache.near import MISSING, NearCache
from onair.cache.singleflight import SingleFlight
from onair.cache.tracking import Tracker
from onair.clients.valkey import ValkeyClient
from onair.logging import get_logger

log = get_logger("onair.cache.reader")

T = TypeVar("T")
Loader = Callable[[], Awaitable[Any]]

TOMBSTONE_PREFIX = b"\x00T"
"""Start of a tombstone value (encoded values start with a format letter, never a NUL byte)."""

VALKEY_DOWN: tuple[type[BaseException], ...] = (
    ValkeyConnectionError,
    ValkeyTimeoutError,
    OSError,
    TimeoutError,
)

_NO_VALUE: Any = object()


class CacheUnavailable(ConnectionError):
    """Valkey could not be reached and the read has no loader to fall back on."""


class _Fill:
    __slots__ = ("epoch", "key", "stale")

    def __init__(self, key: str, epoch: int) -> None:
        self.key = key
        self.epoch = epoch
        self.stale = False


class CachedReader:
    """Two-tier read-through cache over one :class:`Tracker` (share the tracker within a process).

    Keys are full Valkey keys (build them with ``client.key(...)``). Values must be encodable by
    the codec (msgpack by default) and are shared between callers: treat them as immutable.
    ``None`` is a value like any other (a loader returning None caches "not found").
    ``near_enabled=False`` skips the near cache: plain cache-aside on Valkey (untracked reads),
    still single-flight, e.g. to measure what the near cache buys.
    """

    def __init__(
        self,
        client: ValkeyClient,
        tracker: Tracker,
        *,
        near: NearCache | None = None,
        codec: Codec | None = None,
        ttl_s: int = 3600,
        name: str = "default",
        registry: CollectorRegistry | None = None,
        retry_after_s: float = 0.5,
        near_enabled: bool = True,
    ) -> None:
        self.client = client
        self.tracker = tracker
        self.near = near if near is not None else NearCache()
        self.codec = codec if codec is not None else Codec()
        self.ttl_s = int(ttl_s)
        self.name = name
        self.metrics = CacheMetrics.create(name, registry)
        self.retry_after_s = retry_after_s
        self.near_enabled = near_enabled
        self.loader_calls = 0
        self.valkey_calls = 0
        self._flight: SingleFlight[str, Any] = SingleFlight()
        self._fills: dict[str, list[_Fill]] = {}
        self._down_until = 0.0
        self._ifeq_supported = True
        self._hit = self.metrics.near_hits.inc
        tracker.add_listener(self._on_invalidate)

    def close(self) -> None:
        """Stop listening to the tracker (the tracker and client are closed by their owner)."""
        self.tracker.remove_listener(self._on_invalidate)

    # -- reads -----------------------------------------------------------------------------------
    async def get(self, key: str, loader: Loader | None = None) -> Any:
        """Near cache, then Valkey, then ``loader`` (None: Valkey is the source and a missing key
        reads as None)."""
        if self.near_enabled and self.tracker.ready:
            value = self.near.get(key)
            if value is not MISSING:
                self._hit()
                return value
        self.metrics.near_misses.inc()
        value, shared = await self._flight.do(key, lambda: self._fetch(key, loader))
        if shared:
            self.metrics.singleflight_shared.inc()
        return value

    async def _fetch(self, key: str, loader: Loader | None) -> Any:
        fill = _Fill(key, self.tracker.epoch)
        self._fills.setdefault(key, []).append(fill)
        try:
            value, size = await self._read_through(key, loader)
            if size >= 0 and not fill.stale and self.tracker.ready and self.tracker.epoch == fill.epoch:
                self.near.put(key, value, size)
            return value
        finally:
            fills = self._fills.get(key)
            if fills is not None:
                fills.remove(fill)
                if not fills:
                    del self._fills[key]

    async def _read_through(self, key: str, loader: Loader | None) -> tuple[Any, int]:
        """``(value, size)``; ``size < 0`` means the value must not go into the near cache."""
        if time.monotonic() < self._down_until:
            return await self._load_only(loader), -1
        tracked = self.near_enabled and self.tracker.ready
        conn = self.tracker.data if tracked else self.client.raw
        try:
            self._valkey_call()
            raw = await conn.execute_command("GET", key)
        except VALKEY_DOWN as exc:
            self._mark_down(exc)
            return await self._load_only(loader), -1
        if raw is not None and not raw.startswith(TOMBSTONE_PREFIX):
            return self.codec.decode(raw), (len(raw) if tracked else -1)
        if loader is None:
            return None, (0 if tracked and raw is None else -1)
        value = await self._call_loader(loader)
        await self._fill_valkey(key, self.codec.encode(value), raw)
        # Our own SET invalidates our tracking of the key: the next read re-reads it (tracked).
        return value, -1

    async def _fill_valkey(self, key: str, encoded: bytes, seen: bytes | None) -> None:
        try:
            self._valkey_call()
            if seen is None:
                await self.client.raw.execute_command("SET", key, encoded, "NX", "EX", self.ttl_s)
            elif self._ifeq_supported:
                await self.client.raw.execute_command("SET", key, encoded, "IFEQ", seen, "EX", self.ttl_s)
        except VALKEY_DOWN as exc:
            self._mark_down(exc)
        except ResponseError as exc:  # Valkey < 8.1: no IFEQ; leave the tombstone (reads load)
            self._ifeq_supported = False
            log.warning("cache.fill.ifeq_unsupported", error=str(exc))

    async def _load_only(self, loader: Loader | None) -> Any:
        if loader is None:
            raise CacheUnavailable("Valkey is unavailable and this read has no loader")
        return await self._call_loader(loader)

    async def _call_loader(self, loader: Loader) -> Any:
        self.loader_calls += 1
        self.metrics.loader_calls.inc()
        return await loader()

    def _valkey_call(self) -> None:
        self.valkey_calls += 1
        self.metrics.valkey_calls.inc()

    def _mark_down(self, exc: BaseException) -> None:
        if time.monotonic() >= self._down_until:
            log.warning("cache.valkey.unavailable", error=repr(exc), retry_after_s=self.retry_after_s)
        self._down_until = time.monotonic() + self.retry_after_s

    # -- writes ----------------------------------------------------------------------------------
    async def write(self, key: str, commit: Callable[[], Awaitable[T]], *, value: Any = _NO_VALUE) -> T:
        """Run ``commit`` (the database transaction), then publish ``value`` if given, else
        :meth:`invalidate` the key. Returns what ``commit`` returned."""
        result = await commit()
        if value is _NO_VALUE:
            await self.invalidate(key)
        else:
            await self.publish(key, value)
        return result

    async def publish(self, key: str, value: Any, ttl_s: int | None = None) -> None:
        """Set the new value in Valkey (after the commit). Use when writes to a key are ordered,
        e.g. one writer per key; otherwise prefer :meth:`invalidate`."""
        self._drop_local(key)
        self._valkey_call()
        await self.client.raw.execute_command("SET", key, self.codec.encode(value), "EX", ttl_s or self.ttl_s)
        self._drop_local(key)

    async def invalidate(self, key: str) -> None:
        """Replace the value with a tombstone (after the commit): the next read loads from the loader."""
        self._drop_local(key)
        self._valkey_call()
        await self.client.raw.execute_command("SET", key, TOMBSTONE_PREFIX + os.urandom(8), "EX", self.ttl_s)
        self._drop_local(key)

    async def delete(self, key: str) -> None:
        """Remove the key from Valkey (for data whose source is Valkey itself)."""
        self._drop_local(key)
        self._valkey_call()
        await self.client.raw.execute_command("DEL", key)
        self._drop_local(key)

    def _drop_local(self, key: str) -> None:
        self._on_invalidate([key], count=False)

    # -- invalidations ---------------------------------------------------------------------------
    def _on_invalidate(self, keys: list[str] | None, *, count: bool = True) -> None:
        if keys is None:
            self.near.clear()
            self._flight.forget_all()
            for fills in self._fills.values():
                for fill in fills:
                    fill.stale = True
            if count:
                self.metrics.flushes.inc()
            return
        for key in keys:
            self.near.invalidate(key)
            self._flight.forget(key)
            for fill in self._fills.get(key, ()):
                fill.stale = True
        if count:
            self.metrics.invalidations.inc(len(keys))

    def stats(self) -> dict[str, int]:
        return {
            "near_entries": len(self.near),
            "near_bytes": self.near.bytes,
            "near_hits": self.near.hits,
            "near_misses": self.near.misses,
            "near_evictions": self.near.evictions,
            "valkey_calls": self.valkey_calls,
            "loader_calls": self.loader_calls,
            "flushes": self.tracker.flushes,
        }
