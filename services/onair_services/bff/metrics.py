"""The BFF's Prometheus metrics: upstream calls by outcome and latency, degraded parts, page cache."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UPSTREAM_CALLS = Counter(
    "onair_bff_upstream_calls_total",
    "Calls from the BFF to an upstream service, by outcome "
    "(ok, not_found, error_status, timeout, unavailable, breaker_open, bad_body)",
    ["upstream", "outcome"],
)
UPSTREAM_SECONDS = Histogram(
    "onair_bff_upstream_duration_seconds",
    "Duration of a call to an upstream (until its body was read, or the deadline)",
    ["upstream"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
DEGRADED = Counter(
    "onair_bff_degraded_parts_total", "Page parts answered without their data", ["page", "part"]
)
PAGES = Counter(
    "onair_bff_pages_total",
    "Pages composed, by how: composed (own calls), shared (joined a flight), cached (anonymous cache)",
    ["page", "how"],
)
BREAKER_STATE = Gauge(
    "onair_bff_breaker_state", "Circuit breaker per upstream (0 closed, 1 half-open, 2 open)", ["upstream"]
)
