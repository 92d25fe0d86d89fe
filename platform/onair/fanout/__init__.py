"""Fast fan-out: one shared log per process, a cursor per subscriber, fed by NATS.

* :mod:`onair.fanout.log` - :class:`FanoutLog`, :class:`Subscription`, :class:`Gap`;
* :mod:`onair.fanout.bridge` - :class:`FanoutBridge`: one NATS subscription per subject pattern
  per process feeding a local log, reconnects turned into gap markers, optional JetStream history;
* :mod:`onair.fanout.sse` / :mod:`onair.fanout.ws` - serve a subscription to browsers;
* :mod:`onair.fanout.metrics` - Prometheus metrics. See docs/fanout.md.
"""

from onair.fanout.log import FanoutLog, Gap, LogClosed, Subscription

__all__ = ["FanoutLog", "Gap", "LogClosed", "Subscription"]
