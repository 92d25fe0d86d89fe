"""The in-process near cache: bounded by entry count and by bytes, per-entry TTL, LRU eviction.

It knows nothing about Valkey: :class:`onair.cache.reader.CachedReader` decides what may be stored
(only values it can vouch for) and drops entries when invalidations arrive. Counters (hits, misses,
evictions, expirations) are plain ints so the hit path stays cheap; metrics read them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""Returned by :meth:`NearCache.get` when there is no live entry (``None`` is a cacheable value)."""


class NearCache:
    """LRU map ``key -> value`` with at most ``max_entries`` entries and ``max_bytes`` of accounted size.

    ``size`` passed to :meth:`put` is what the entry is charged (the cache uses the encoded length
    plus a fixed overhead). An entry larger than ``max_bytes`` is not stored.
    """

    ENTRY_OVERHEAD = 64

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        ttl_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_bytes < 1 or ttl_s <= 0:
            raise ValueError("max_entries, max_bytes and ttl_s must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        # key -> (value, size, expires_at)
        self._data: OrderedDict[str, tuple[Any, int, float]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expirations = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: str) -> bool:
        entry = self._data.get(key)
        return entry is not None and entry[2] > self._clock()

    def get(self, key: str) -> Any:
        """The value, or :data:`MISSING`; a hit makes the entry most recently used."""
        entry = self._data.get(key)
        if entry is None:
            self.misses += 1
            return MISSING
        if entry[2] <= self._clock():
            self._remove(key)
            self.expirations += 1
            self.misses += 1
            return MISSING
        self._data.move_to_end(key)
        self.hits += 1
        return entry[0]

    def put(self, key: str, value: Any, size: int, ttl_s: float | None = None) -> bool:
        """Store ``value``; evict least recently used entries until both bounds hold."""
        charged = size + self.ENTRY_OVERHEAD
        if charged > self.max_bytes:
            self.invalidate(key)
            return False
        self.invalidate(key)
        ttl = self.ttl_s if ttl_s is None else min(ttl_s, self.ttl_s)
        self._data[key] = (value, charged, self._clock() + ttl)
        self.bytes += charged
        while len(self._data) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, old_size, _) = self._data.popitem(last=False)
            self.bytes -= old_size
            self.evictions += 1
        return True

    def invalidate(self, key: str) -> bool:
        """Drop ``key``; True if it was present."""
        if key in self._data:
            self._remove(key)
            return True
        return False

    def clear(self) -> int:
        """Drop everything; returns how many entries were dropped."""
        n = len(self._data)
        self._data.clear()
        self.bytes = 0
        return n

    def _remove(self, key: str) -> None:
        _, size, _ = self._data.pop(key)
        self.bytes -= size
