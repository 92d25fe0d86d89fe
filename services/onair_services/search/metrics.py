"""search's Prometheus metrics (request counts and durations come from the service skeleton)."""

from __future__ import annotations

from prometheus_client import Counter

SEARCHES = Counter("onair_search_queries", "Searches answered", ["kind"])  # kind: words | browse
