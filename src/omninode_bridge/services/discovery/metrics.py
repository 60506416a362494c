"""Counters and gauges of a ToolDiscoveryService, plain fields behind named events.

Each service owns one :class:`DiscoveryMetrics` (or is given one). The service
reports what happened through one method per event (``call_answered``,
``tool_ejected``…), never by a field's name; exporters read the fields (the
server's ``/metrics`` reads them at scrape time, in
:mod:`omninode_bridge.api.metrics`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DiscoveryMetrics"]


@dataclass
class DiscoveryMetrics:
    """What the service did since it was created.

    ``index_degraded`` is 1 while the index cannot be kept current (database
    unreachable, feed lost) and is served from the last known state;
    ``index_unavailable`` is 1 once that lasted past the grace period and
    calls fail. ``index_stale_since`` is the monotonic time it became stale.
    ``calls`` counts route_request calls answered, ``call_failures`` those
    that raised ToolCallError after reaching for a tool; ``failovers``
    counts attempts on another tool after a failed one; ``ejections`` counts
    tools put out of rotation after failing to connect.
    """

    index_tools: int = 0
    index_loads: int = 0
    index_degraded: int = 0
    index_unavailable: int = 0
    index_stale_since: float | None = None
    feed_events: int = 0
    feed_reconnects: int = 0
    heartbeat_refreshes: int = 0
    heartbeat_rows: int = 0
    sync_failures: int = 0
    calls: int = 0
    call_failures: int = 0
    failovers: int = 0
    ejections: int = 0

    # -- routing ----------------------------------------------------------------------

    def call_answered(self) -> None:
        self.calls += 1

    def call_failed(self) -> None:
        self.call_failures += 1

    def failed_over(self) -> None:
        self.failovers += 1

    def tool_ejected(self) -> None:
        self.ejections += 1

    # -- the index ----------------------------------------------------------------------

    def index_loaded(self, tools: int) -> None:
        self.index_loads += 1
        self.index_tools = tools

    def feed_applied(self, events: int, tools: int) -> None:
        self.feed_events += events
        self.index_tools = tools

    def feed_lost(self) -> None:
        self.feed_reconnects += 1

    def heartbeats_refreshed(self, rows: int) -> None:
        self.heartbeat_refreshes += 1
        self.heartbeat_rows += rows

    def sync_failed(self) -> None:
        self.sync_failures += 1

    def became_stale(self, since: float) -> None:
        """The index is not current since ``since`` (monotonic) and serves what it knows."""
        self.index_degraded = 1
        self.index_stale_since = since

    def became_unavailable(self) -> None:
        """The index has been stale past the grace: calls fail."""
        self.index_unavailable = 1

    def became_current(self) -> None:
        self.index_degraded = 0
        self.index_unavailable = 0
        self.index_stale_since = None

    def as_dict(self) -> dict[str, Any]:
        """Every counter and gauge by name."""
        return asdict(self)
