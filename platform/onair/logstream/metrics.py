"""Prometheus metrics of the log stream (default registry, created once per process).

Per projection and partition: lag in records and seconds, applied events (a counter, and an
applied-per-second gauge over the last batches), events dropped as stale, events dead-lettered.
Producer side: spool depth (records waiting on disk) and records sent/spooled.
"""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import Counter, Gauge

LAG_RECORDS = Gauge(
    "onair_projection_lag_records", "Records not yet applied", ["projection", "topic", "partition"]
)
LAG_SECONDS = Gauge(
    "onair_projection_lag_seconds",
    "Age of the last applied record when more are waiting (0 when caught up)",
    ["projection", "topic", "partition"],
)
APPLIED = Counter("onair_projection_applied_total", "Events applied", ["projection", "topic", "partition"])
APPLIED_RATE = Gauge("onair_projection_applied_per_second", "Events applied per second", ["projection"])
DROPPED_STALE = Counter(
    "onair_projection_dropped_stale_total", "Events dropped as older than the last applied", ["projection"]
)
DEAD_LETTERED = Counter(
    "onair_projection_dead_lettered_total", "Records sent to the dead-letter table", ["projection", "reason"]
)
AFTER_COMMIT_ERRORS = Counter(
    "onair_projection_after_commit_errors_total",
    "Failed after-commit hooks (batch stayed committed)",
    ["projection"],
)
SPOOL_DEPTH = Gauge("onair_logstream_spool_depth", "Records in the on-disk spool", ["service"])
SENT = Counter("onair_logstream_sent_total", "Log events acknowledged by the broker", ["service"])
DROPPED = Counter(
    "onair_logstream_dropped_total", "Log events lost because neither buffer nor spool took them", ["service"]
)
SPOOLED = Counter("onair_logstream_spooled_total", "Log events written to the spool", ["service"])


class RateMeter:
    """Events per second over a sliding window of recent batches."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._points: deque[tuple[float, int]] = deque()
        self._total = 0

    def add(self, n: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._points.append((now, n))
        self._total += n
        while self._points and now - self._points[0][0] > self.window_s:
            _, old = self._points.popleft()
            self._total -= old
        span = max(now - self._points[0][0], 1.0) if self._points else 1.0
        return self._total / span
