"""Prometheus counters of the cache, labelled by reader name.

The metric families are created once per registry (the default one unless a test passes its
own ``CollectorRegistry``), so building many readers never registers a name twice.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter

_FAMILIES = {
    "near_hits": "Reads answered by the in-process near cache",
    "near_misses": "Reads the near cache could not answer",
    "valkey_calls": "Commands the cache sent to Valkey (reads and fills)",
    "loader_calls": "Calls of the loader (the database)",
    "singleflight_shared": "Reads that shared another read's in-flight Valkey/loader work",
    "invalidations": "Keys invalidated by Valkey (tracking messages)",
    "flushes": "Whole near-cache flushes (null invalidation or invalidation connection lost)",
}

_lock = threading.Lock()
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, Counter]] = weakref.WeakKeyDictionary()


def _families(registry: CollectorRegistry) -> dict[str, Counter]:
    with _lock:
        fams = _by_registry.get(registry)
        if fams is None:
            fams = {
                name: Counter(f"onair_cache_{name}", doc, ["cache"], registry=registry)
                for name, doc in _FAMILIES.items()
            }
            _by_registry[registry] = fams
        return fams


@dataclass
class CacheMetrics:
    """The counters of one reader (children bound once, so the hot path is a single ``inc()``)."""

    near_hits: Counter
    near_misses: Counter
    valkey_calls: Counter
    loader_calls: Counter
    singleflight_shared: Counter
    invalidations: Counter
    flushes: Counter

    @classmethod
    def create(cls, name: str = "default", registry: CollectorRegistry | None = None) -> CacheMetrics:
        fams = _families(registry if registry is not None else REGISTRY)
        return cls(**{key: fam.labels(name) for key, fam in fams.items()})
