"""liveinfo's Prometheus metrics: what a read costs, for dashboards and ``onair bench e2e``.

* ``onair_liveinfo_reads_total{view}`` — reads answered (``channel``, ``onair``, ``ranking``,
  ``events`` for SSE connections), with or without a position;
* ``onair_liveinfo_read_db_queries_total{view}`` — SQL queries those reads made (cache loaders,
  reads with a position, SSE snapshots);
* ``onair_liveinfo_valkey_commands_total{side}`` — commands sent to Valkey: ``read`` (cache reads
  and fills, ranking reads), ``write`` (invalidations and ranking updates by the projections);
* ``onair_liveinfo_view_changes_total{projection}`` — channel views changed by a projection
  commit (each one is an invalidation and a ``live.channel.<channel>`` message).

Valkey commands per read = ``rate(valkey_commands_total{side="read"}) / rate(reads_total)``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

READS = Counter("onair_liveinfo_reads", "liveinfo reads answered", ["view"])
READ_DB_QUERIES = Counter("onair_liveinfo_read_db_queries", "SQL queries made by liveinfo reads", ["view"])
#: children bound once (the hot path is a single ``inc()``)
READ = {view: READS.labels(view) for view in ("channel", "onair", "ranking", "events")}
READ_DB = {view: READ_DB_QUERIES.labels(view) for view in ("channel", "onair", "ranking", "events")}
VIEW_CHANGES = Counter(
    "onair_liveinfo_view_changes", "Channel views changed by a projection commit", ["projection"]
)


class CommandSource(Protocol):
    def valkey_commands(self) -> tuple[int, int]:
        """(read side, write side) commands sent so far."""
        ...


_SOURCES: weakref.WeakSet[CommandSource] = weakref.WeakSet()


class _ValkeyCommands(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "onair_liveinfo_valkey_commands", "Commands liveinfo sent to Valkey", labels=["side"]
        )
        reads = writes = 0
        for source in list(_SOURCES):
            r, w = source.valkey_commands()
            reads += r
            writes += w
        family.add_metric(["read"], reads)
        family.add_metric(["write"], writes)
        yield family


REGISTRY.register(_ValkeyCommands())


def track(source: CommandSource) -> None:
    """Count ``source``'s Valkey commands in the metrics (held weakly)."""
    _SOURCES.add(source)
