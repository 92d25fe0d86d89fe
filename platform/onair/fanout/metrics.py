"""Prometheus metrics of the fan-out, paid for at scrape time rather than per delivery.

A log keeps plain integers (its head is the published count, each cursor knows how far it went);
a custom collector turns them into metric families when Prometheus scrapes, so publishing and
delivering cost nothing extra. Rare events (slow-client disconnects, reconnect gaps) use ordinary
counters.

Families (label ``log`` = the log's name):

* ``onair_fanout_subscribers`` (gauge) - open subscriptions;
* ``onair_fanout_published_total`` - entries appended (rate() gives published/s);
* ``onair_fanout_delivered_total`` - entries handed to readers (rate() gives delivered/s);
* ``onair_fanout_gaps_total`` / ``onair_fanout_missed_total`` - readers that fell behind the
  window, and how many entries they lost;
* ``onair_fanout_upstream_gaps_total`` - gap markers appended because NATS was disconnected;
* ``onair_fanout_slow_client_disconnects_total{transport}`` - connections closed by the policy.

Registration is idempotent (tests import and re-create freely): :func:`ensure_registered`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from onair.fanout.log import ALL_LOGS, FanoutLog

_lock = threading.Lock()
_registered: set[int] = set()
_counters: dict[str, Counter] = {}


def tracked_logs() -> list[FanoutLog[Any]]:
    """Every live log of the process (each log registers itself; a dropped log disappears)."""
    return list(ALL_LOGS)


class FanoutCollector(Collector):
    """Reads the counters of every tracked log at scrape time."""

    def collect(self) -> Iterable[Metric]:
        subs = GaugeMetricFamily("onair_fanout_subscribers", "Open fan-out subscriptions", labels=["log"])
        published = CounterMetricFamily(
            "onair_fanout_published", "Entries appended to fan-out logs", labels=["log"]
        )
        delivered = CounterMetricFamily(
            "onair_fanout_delivered", "Entries handed to fan-out readers", labels=["log"]
        )
        gaps = CounterMetricFamily(
            "onair_fanout_gaps", "Readers that fell behind the retained window", labels=["log"]
        )
        missed = CounterMetricFamily(
            "onair_fanout_missed", "Entries lost by readers behind the window", labels=["log"]
        )
        totals: dict[str, list[int]] = {}
        for log in tracked_logs():
            t = totals.setdefault(log.name, [0, 0, 0, 0, 0])
            t[0] += log.subscribers
            t[1] += log.head
            t[2] += log.delivered
            t[3] += log.gaps_behind
            t[4] += log.missed_behind
        for name, (n_subs, n_pub, n_del, n_gaps, n_missed) in sorted(totals.items()):
            subs.add_metric([name], n_subs)
            published.add_metric([name], n_pub)
            delivered.add_metric([name], n_del)
            gaps.add_metric([name], n_gaps)
            missed.add_metric([name], n_missed)
        yield from (subs, published, delivered, gaps, missed)


def _counter(name: str, doc: str, labels: list[str], registry: CollectorRegistry) -> Counter:
    key = f"{id(registry)}:{name}"
    with _lock:
        if key not in _counters:
            _counters[key] = Counter(name, doc, labels, registry=registry)
        return _counters[key]


def ensure_registered(registry: CollectorRegistry = REGISTRY) -> None:
    """Register the collector and counters once per registry (safe to call any number of times)."""
    with _lock:
        if id(registry) not in _registered:
            registry.register(FanoutCollector())
            _registered.add(id(registry))
    _counter(
        "onair_fanout_slow_client_disconnects",
        "Connections closed by the slow-client policy",
        ["transport"],
        registry,
    )
    _counter(
        "onair_fanout_upstream_gaps",
        "Gap markers appended because the NATS connection was lost",
        ["log"],
        registry,
    )


def slow_client_disconnect(transport: str) -> None:
    ensure_registered()
    _counter("onair_fanout_slow_client_disconnects", "", ["transport"], REGISTRY).labels(transport).inc()


def upstream_gap(log_name: str) -> None:
    ensure_registered()
    _counter("onair_fanout_upstream_gaps", "", ["log"], REGISTRY).labels(log_name).inc()


def snapshot(registry: CollectorRegistry = REGISTRY) -> dict[str, float]:
    """Flat ``{"name{labels}": value}`` view of the fan-out samples (tests, the benchmark)."""
    ensure_registered(registry)
    out: dict[str, float] = {}
    for metric in registry.collect():
        if not metric.name.startswith("onair_fanout"):
            continue
        for sample in metric.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out
