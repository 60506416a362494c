"""Counters and gauges of a ToolDiscoveryService, with an optional export hook.

Each service owns one :class:`DiscoveryMetrics` (or is given one). ``hook``,
when set, is called as ``hook(name, value)`` on every change, for exporting
to Prometheus, StatsD or a test; it runs inline, so it must be quick and must
not raise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DiscoveryMetrics", "MetricsHook"]

MetricsHook = Callable[[str, float], None]


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
    hook: MetricsHook | None = field(default=None, repr=False, compare=False)

    def add(self, name: str, amount: int = 1) -> None:
        """Increase counter ``name`` by ``amount``."""
        value = getattr(self, name) + amount
        setattr(self, name, value)
        if self.hook is not None:
            self.hook(name, float(value))

    def set(self, name: str, value: int) -> None:
        """Set gauge ``name``."""
        if getattr(self, name) == value:
            return
        setattr(self, name, value)
        if self.hook is not None:
            self.hook(name, float(value))

    def as_dict(self) -> dict[str, Any]:
        """Every counter and gauge by name (without the hook)."""
        data = asdict(self)
        data.pop("hook")
        return data
