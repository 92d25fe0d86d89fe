"""chat's Prometheus metrics (default registry).

Counters for what the service does (events posted by type, posts refused by reason, resume gaps,
notifications, donations); viewers and deliveries are read at scrape time from the live
runtimes (a custom collector: nothing is paid per delivery).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

POSTED = Counter("onair_chat_events_posted_total", "Room events published by this process", ["type"])
REFUSED = Counter("onair_chat_posts_refused_total", "Posts refused", ["reason"])
RESUME_GAPS = Counter(
    "onair_chat_resume_gaps_total", "Gap markers sent to resuming viewers (expired or reset ids)", ["reason"]
)
NOTIFICATIONS = Counter("onair_chat_notifications_total", "went_live notifications published")
DONATIONS = Counter("onair_chat_donations_total", "Donation announcements consumed", ["outcome"])
VIEWER_REPORTS = Counter("onair_chat_viewer_count_reports_total", "media.viewer.count events logged")


class _Source(Protocol):
    def viewer_counts(self) -> dict[str, int]: ...

    def delivery_totals(self) -> tuple[int, int, int]: ...


_SOURCES: weakref.WeakSet[Any] = weakref.WeakSet()
_registered = False


class ChatCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        viewers = GaugeMetricFamily(
            "onair_chat_viewers", "Viewers connected to this process", labels=["transport"]
        )
        delivered = CounterMetricFamily(
            "onair_chat_deliveries", "Room events handed to this process's viewers"
        )
        behind = CounterMetricFamily(
            "onair_chat_slow_viewer_gaps", "Gaps sent to viewers that fell out of a room's window"
        )
        counts: dict[str, int] = {}
        total_delivered = total_gaps = 0
        for source in list(_SOURCES):
            for transport, n in source.viewer_counts().items():
                counts[transport] = counts.get(transport, 0) + n
            d, g, _missed = source.delivery_totals()
            total_delivered += d
            total_gaps += g
        for transport in ("sse", "ws", "notify"):
            viewers.add_metric([transport], counts.get(transport, 0))
        delivered.add_metric([], total_delivered)
        behind.add_metric([], total_gaps)
        yield from (viewers, delivered, behind)


def track(source: _Source) -> None:
    """Count ``source`` (a running chat runtime) in the scrape-time metrics."""
    global _registered
    if not _registered:
        REGISTRY.register(ChatCollector())
        _registered = True
    _SOURCES.add(source)
