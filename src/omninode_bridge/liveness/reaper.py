"""The reaper: removes tools long past their heartbeat, unless that looks like a fault.

Liveness is computed at read time (a heartbeat within the TTL), so the reaper
never decides who is routable; it only deletes rows whose last heartbeat is
older than the retention (``TOOLREG_RETENTION_SECONDS``, always longer than the
TTL), each removal a ``deleted`` change-feed event with its reason.

Self-preservation: when the tools due for removal are more than
``TOOLREG_SELF_PRESERVATION_THRESHOLD`` of all registered tools, the pass
removes nothing and says so (report, warning log, gauge), pass after pass,
until the share drops or an operator forces it. A mass expiry is far more
often a network or registry fault than a mass death, and the dead tools are
already unroutable, so holding back hides nothing.

Each pass also records heartbeat freshness transitions (``stale`` dated when
the heartbeat expired, ``healthy`` when it is seen again) and prunes change
events older than ``TOOLREG_EVENT_RETENTION_SECONDS``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from omninode_bridge.liveness.leader import Fence, fence_args, fenced_ids
from omninode_bridge.liveness.metrics import LivenessMetrics
from omninode_bridge.models.timestamps import to_utc
from omninode_bridge.services.change_feed import ChangeFeed
from omninode_bridge.services.postgres_client import PostgresClient
from omninode_bridge.services.sql import load_queries
from omninode_bridge.settings import Settings

__all__ = ["DueTool", "ReapReport", "Reaper"]

logger = logging.getLogger(__name__)
Q = load_queries("liveness.sql")


@dataclass(frozen=True, slots=True)
class DueTool:
    """A tool past the retention: ``last_seen`` is its last heartbeat (``None``: never)."""

    tool_id: str
    last_seen: datetime | None


@dataclass(frozen=True)
class ReapReport:
    """What one reaper pass found and did.

    ``removed`` holds the ids removed, or in a dry run the ids a real pass
    would remove now. ``self_preservation`` is true when the share of due
    tools exceeded the threshold; with ``forced`` the pass removed them anyway.
    """

    total: int
    due: list[DueTool]
    removed: list[str]
    self_preservation: bool
    forced: bool
    dry_run: bool
    threshold: float
    retention_seconds: float
    went_stale: list[str] = field(default_factory=list)
    came_back: list[str] = field(default_factory=list)
    events_pruned: int = 0

    @property
    def share(self) -> float:
        """The fraction of registered tools that is due (0 when none are registered)."""
        return len(self.due) / self.total if self.total else 0.0

    @property
    def held_back(self) -> bool:
        """True when self-preservation kept due tools (not forced)."""
        return self.self_preservation and not self.forced

    def summary(self) -> str:
        """One line for people: what was removed, or why nothing was."""
        verb = "would remove" if self.dry_run else "removed"
        if self.held_back:
            return (
                f"self-preservation engaged: {len(self.due)} of {self.total} registered tools "
                f"({self.share:.0%}) have not heartbeated within the retention "
                f"({self.retention_seconds:g}s), more than the threshold "
                f"({self.threshold:.0%}); {verb} nothing (a mass expiry is more often a "
                "network or registry fault than a mass death; `toolreg reap --force` "
                "removes them)"
            )
        if not self.due:
            return (
                f"nothing to remove: none of {self.total} registered tools is past the "
                f"retention ({self.retention_seconds:g}s)"
            )
        forced = " (self-preservation overridden by --force)" if self.self_preservation else ""
        return f"{verb} {len(self.removed)} of {self.total} tools{forced}: " + ", ".join(
            self.removed
        )


class Reaper:
    """Runs reaper passes on ``client`` with the retention and threshold of ``settings``."""

    def __init__(
        self, client: PostgresClient, settings: Settings, metrics: LivenessMetrics
    ) -> None:
        self.client = client
        self.settings = settings
        self.metrics = metrics
        self.feed = ChangeFeed(client)

    async def sweep(self, fence: Fence | None = None) -> tuple[list[str], list[str]]:
        """Record heartbeat transitions: the ids that went stale, and those back to healthy."""
        ttl = float(self.settings.ttl_seconds)
        args = fence_args(fence)
        row = await self.client.fetchrow(Q["mark_healthy"], ttl, *args)
        came_back = fenced_ids(row, "heartbeat sweep")
        row = await self.client.fetchrow(Q["mark_stale"], ttl, *args)
        went_stale = fenced_ids(row, "heartbeat sweep")
        self.metrics.heartbeat_transitions.labels("stale").inc(len(went_stale))
        self.metrics.heartbeat_transitions.labels("healthy").inc(len(came_back))
        return went_stale, came_back

    async def run_pass(
        self, *, dry_run: bool = False, force: bool = False, fence: Fence | None = None
    ) -> ReapReport:
        """One pass: sweep heartbeat transitions, reap (or hold back), prune old events.

        ``dry_run`` writes nothing at all; ``force`` overrides self-preservation;
        ``fence`` makes every write conditional on still leading (see leader.py):
        a pass whose leader lost the lock raises LeadershipLostError.
        """
        retention = float(self.settings.retention_seconds)
        threshold = float(self.settings.self_preservation_threshold)
        went_stale: list[str] = []
        came_back: list[str] = []
        if not dry_run:
            went_stale, came_back = await self.sweep(fence)
        row = await self.client.fetchrow(Q["reap_candidates"], retention)
        assert row is not None  # an aggregate always returns one row
        total = int(row["total"])
        due = [
            DueTool(tool_id, to_utc(seen) if seen is not None else None)
            for tool_id, seen in zip(row["tool_ids"], row["last_seen"], strict=True)
        ]
        engaged = bool(due) and len(due) / total > threshold
        removed: list[str] = []
        if engaged and not force:
            pass  # self-preservation: held back, reported below
        elif dry_run:
            removed = [d.tool_id for d in due]
        elif due:
            reaped = await self.client.fetchrow(
                Q["reap"], [d.tool_id for d in due], retention, *fence_args(fence)
            )
            removed = fenced_ids(reaped, "reaper")
        pruned = 0
        if not dry_run:
            pruned = await self.feed.prune(self.settings.event_retention_seconds)
            # Who held a released tool_id is needed for the claims' hold (the retention).
            await self.client.execute(
                Q["prune_releases"],
                max(self.settings.event_retention_seconds, self.settings.retention_seconds),
            )
        report = ReapReport(
            total=total,
            due=due,
            removed=removed,
            self_preservation=engaged,
            forced=force,
            dry_run=dry_run,
            threshold=threshold,
            retention_seconds=retention,
            went_stale=went_stale,
            came_back=came_back,
            events_pruned=pruned,
        )
        if not dry_run:
            self._record(report)
        return report

    def _record(self, report: ReapReport) -> None:
        self.metrics.due.set(len(report.due))
        self.metrics.self_preservation.set(1 if report.held_back else 0)
        self.metrics.reaped.inc(len(report.removed))
        if report.held_back:
            logger.warning("reaper: %s", report.summary())
        elif report.removed:
            logger.info("reaper: %s", report.summary())
