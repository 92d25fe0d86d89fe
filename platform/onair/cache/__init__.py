"""Cached reads: single-flight plus a server-assisted client-side cache over Valkey.

``SingleFlight`` (one in-flight call per key), ``NearCache`` (bounded in-process LRU with TTL),
``Tracker`` (the invalidation connection: CLIENT TRACKING default or BCAST mode), ``CachedReader``
(near cache -> Valkey -> loader, with the stale-fill race guard and the write path), ``TokenCache``
(token data and blocked tokens), ``Codec`` and ``CacheMetrics``. See docs/cache.md.
"""

from onair.cache.codec import Codec, CodecError
from onair.cache.metrics import CacheMetrics
from onair.cache.near import MISSING, NearCache
from onair.cache.reader import CachedReader, CacheUnavailable
from onair.cache.singleflight import SingleFlight
from onair.cache.tokens import SEVEN_DAYS_S, TokenCache
from onair.cache.tracking import InvalidationListener, Tracker, TrackingLost

__all__ = [
    "MISSING",
    "SEVEN_DAYS_S",
    "CacheMetrics",
    "CacheUnavailable",
    "CachedReader",
    "Codec",
    "CodecError",
    "InvalidationListener",
    "NearCache",
    "SingleFlight",
    "TokenCache",
    "Tracker",
    "TrackingLost",
]
