"""The gateway's Prometheus metrics (requests by route and status are the skeleton's,
``onair_http_requests_total{service="gateway",route="<table prefix>"}``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UPSTREAM_SECONDS = Histogram(
    "onair_gateway_upstream_duration_seconds",
    "Time from sending a request upstream to its response headers",
    ["upstream"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UPSTREAM_ERRORS = Counter(
    "onair_gateway_upstream_errors_total",
    "Requests that got no usable answer from the upstream, by kind "
    "(connect, timeout, disconnect, protocol, circuit_open)",
    ["upstream", "kind"],
)
UPSTREAM_RETRIES = Counter(
    "onair_gateway_upstream_retries_total",
    "Idempotent requests tried again after a connection failure",
    ["upstream"],
)
BREAKER_STATE = Gauge(
    "onair_gateway_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open", ["upstream"]
)
BREAKER_OPENED = Counter("onair_gateway_breaker_opened_total", "Times a breaker opened", ["upstream"])
RATE_LIMITED = Counter(
    "onair_gateway_ratelimit_rejections_total", "Requests refused with 429, by policy", ["policy"]
)
AUTH_FAILURES = Counter(
    "onair_gateway_auth_failures_total",
    "Requests refused by authentication (401) or authorisation (403), by reason",
    ["reason"],
)
