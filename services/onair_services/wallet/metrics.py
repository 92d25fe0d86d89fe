"""The wallet's Prometheus metrics (default registry, served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SAGAS = Counter("onair_wallet_sagas_total", "Sagas that ended, by kind and outcome", ["kind", "outcome"])
COMPENSATIONS = Counter(
    "onair_wallet_compensations_total", "Compensation steps that ran to the end", ["kind", "step"]
)
STEP_FAILURES = Counter(
    "onair_wallet_saga_step_failures_total", "Failed attempts of a saga step", ["kind", "step", "code"]
)
RESUMED = Counter(
    "onair_wallet_sagas_resumed_total",
    "Sagas picked up by the sweep (their process died, or a retry was due)",
    ["kind"],
)
IDEMPOTENT_REPLAYS = Counter(
    "onair_wallet_idempotent_replays_total",
    "Requests answered from an earlier request with the same Idempotency-Key",
    ["route"],
)
REJECTIONS = Counter("onair_wallet_rejections_total", "Requests refused by a money rule", ["reason"])
MOVED = Counter("onair_wallet_moved_minor_units_total", "Money moved by posted transfers", ["kind", "step"])
AUDIT_PROBLEMS = Gauge(
    "onair_wallet_audit_problems",
    "Problems the last audit found, by check (balance != ledger, unbalanced transfer, ...); 0 is good",
    ["check"],
)
AUDIT_RUNS = Counter("onair_wallet_audit_runs_total", "Audits run by the service", ["result"])
WRITE_BATCH = Histogram(
    "onair_wallet_write_batch_ops",
    "Operations applied per writer transaction (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
WRITE_SECONDS = Histogram(
    "onair_wallet_write_batch_seconds",
    "Duration of a writer transaction (locks, checks, writes, commit)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
