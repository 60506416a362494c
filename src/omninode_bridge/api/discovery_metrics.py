"""The discovery service's metrics on ``/metrics``, read at scrape time.

:class:`DiscoveryCollector` turns the fields of the app's
:class:`~omninode_bridge.services.discovery.metrics.DiscoveryMetrics` into
``toolreg_discovery_*`` families, named here one by one; the only label is
``outcome`` (``answered`` or ``failed``). Before a service is bound every
family reads 0, so the exposition has the same series from the first scrape.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from omninode_bridge.services.discovery.metrics import DiscoveryMetrics

__all__ = ["DiscoveryCollector"]

_P = "toolreg_discovery_"


class DiscoveryCollector:
    """Every discovery counter and gauge, from the bound :class:`DiscoveryMetrics`.

    Scrapes run in a worker thread: only the scalar fields are read.
    """

    def __init__(self) -> None:
        self.source = DiscoveryMetrics()
        self.grace_seconds = 0.0

    def bind(self, source: DiscoveryMetrics, grace_seconds: float) -> None:
        """Read ``source`` from now on; ``grace_seconds`` is the stale-index grace."""
        self.source = source
        self.grace_seconds = grace_seconds

    def stale_seconds(self) -> float:
        """Seconds the index has been stale, 0 while it is current."""
        m = self.source
        since = m.index_stale_since
        if not m.index_degraded or since is None:
            return 0.0
        return max(0.0, time.monotonic() - since)

    def collect(self) -> Iterator[Metric]:
        m = self.source
        calls = CounterMetricFamily(
            _P + "calls",
            "route_request calls by outcome: answered, or failed after reaching for a tool.",
            labels=["outcome"],
        )
        calls.add_metric(["answered"], m.calls)
        calls.add_metric(["failed"], m.call_failures)
        yield calls
        stale = self.stale_seconds()
        yield from (
            _counter("failovers", "Attempts on another tool after a failed one.", m.failovers),
            _counter(
                "ejections",
                "Tools put out of rotation after failing to connect (or resetting).",
                m.ejections,
            ),
            _counter("index_loads", "Full loads of the discovery index.", m.index_loads),
            _counter("feed_events", "Change-feed events applied to the index.", m.feed_events),
            _counter("feed_reconnects", "Times the index lost the change feed.", m.feed_reconnects),
            _counter(
                "heartbeat_refreshes",
                "Heartbeat refresh queries of the index.",
                m.heartbeat_refreshes,
            ),
            _counter("heartbeat_rows", "Heartbeats the refreshes read.", m.heartbeat_rows),
            _counter(
                "sync_failures",
                "Failed reads of the feed or heartbeats (the index keeps serving).",
                m.sync_failures,
            ),
            GaugeMetricFamily(_P + "index_tools", "Tools in the discovery index.", m.index_tools),
            GaugeMetricFamily(
                _P + "index_stale_seconds",
                "Seconds since the discovery index was last known current (0 while it is): "
                "discovery answers from the last known state until "
                "TOOLREG_STALE_INDEX_GRACE_SECONDS.",
                stale,
            ),
            GaugeMetricFamily(
                _P + "index_degraded",
                "1 while the discovery index cannot be kept current (the database is away) "
                "and discovery answers from the last known state, else 0.",
                float(m.index_degraded),
            ),
            GaugeMetricFamily(
                _P + "index_unavailable",
                "1 once the discovery index has been stale longer than the grace: discovery "
                "calls fail until the database is back, else 0.",
                float(stale > self.grace_seconds),
            ),
        )


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(_P + name, documentation, value=value)
