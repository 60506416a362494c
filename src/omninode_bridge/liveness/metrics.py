"""Prometheus metrics of the liveness passes, created on a registry the caller passes in.

The server passes its own registry, so these appear on ``/metrics`` beside the
HTTP metrics; the CLI passes a throwaway one. Names follow Prometheus
conventions (counters end in ``_total``, units in the name).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["LivenessMetrics"]

CHECK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LivenessMetrics:
    """Reaper, health-check and leader-election metrics of one process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = r = registry
        self.reaped = Counter(
            "toolreg_reaper_removed_tools_total",
            "Tools removed by the reaper (no heartbeat within the retention).",
            registry=r,
        )
        self.self_preservation = Gauge(
            "toolreg_reaper_self_preservation_engaged",
            "1 while the reaper holds back because too large a share of tools is due.",
            registry=r,
        )
        self.due = Gauge(
            "toolreg_reaper_due_tools",
            "Tools past the retention at the last reaper pass (removed or held back).",
            registry=r,
        )
        self.heartbeat_transitions = Counter(
            "toolreg_heartbeat_transitions_total",
            "Heartbeat freshness transitions recorded by this process, by kind.",
            ["kind"],
            registry=r,
        )
        self.checks = Counter(
            "toolreg_health_checks_total",
            "Active health checks by result (success or failure).",
            ["result"],
            registry=r,
        )
        self.check_latency = Histogram(
            "toolreg_health_check_duration_seconds",
            "Latency of one active health check (failures included).",
            buckets=CHECK_BUCKETS,
            registry=r,
        )
        self.check_transitions = Counter(
            "toolreg_health_check_transitions_total",
            "Check status transitions recorded by this process, by kind.",
            ["kind"],
            registry=r,
        )
        self.check_pass_seconds = Gauge(
            "toolreg_health_check_pass_seconds",
            "How long the last complete health-check pass took.",
            registry=r,
        )
        self.checks_in_flight = Gauge(
            "toolreg_health_checks_in_flight",
            "Active health checks in flight now (at most TOOLREG_CHECK_CONCURRENCY).",
            registry=r,
        )
        self.check_delay = Histogram(
            "toolreg_health_check_delay_seconds",
            "How late a scheduled health check began after it fell due (waiting for a slot).",
            buckets=CHECK_BUCKETS,
            registry=r,
        )
        self.check_tools = Gauge(
            "toolreg_health_check_tools",
            "Tools with a health endpoint at the last read, by scheduling state: checked, "
            "suspect (critical or hanging: at most half of the slots), stale (not checked).",
            ["state"],
            registry=r,
        )
        self.passes = Counter(
            "toolreg_liveness_passes_total",
            "Liveness passes run by this process, by kind (reap, check).",
            ["kind"],
            registry=r,
        )
        self.pass_errors = Counter(
            "toolreg_liveness_pass_errors_total",
            "Liveness passes that failed (retried next interval), by kind.",
            ["kind"],
            registry=r,
        )
        self.leader = Gauge(
            "toolreg_liveness_leader",
            "1 while this process is the leader that runs the reaper and the checks.",
            registry=r,
        )
        self.lease_generation = Gauge(
            "toolreg_liveness_lease_generation",
            "Generation of the liveness lease this process last held (its fencing token).",
            registry=r,
        )
        self.deposed = Counter(
            "toolreg_liveness_leader_deposed_total",
            "Times this process stepped down because its lease expired or was taken over.",
            registry=r,
        )
        self.leader_changes = Counter(
            "toolreg_liveness_leader_elections_total",
            "Times this process became the leader.",
            registry=r,
        )
        # Every known label from the start, so dashboards see zeros rather than gaps.
        for result in ("success", "failure"):
            self.checks.labels(result)
        for kind in ("critical", "passing"):
            self.check_transitions.labels(kind)
        for kind in ("stale", "healthy"):
            self.heartbeat_transitions.labels(kind)
        for state in ("checked", "suspect", "stale"):
            self.check_tools.labels(state)
        for kind in ("reap", "check"):
            self.passes.labels(kind)
            self.pass_errors.labels(kind)

    def unregister(self) -> None:
        """Remove these metrics from the registry (a server app restarting its lifespan)."""
        for value in list(vars(self).values()):
            if isinstance(value, Counter | Gauge | Histogram):
                self.registry.unregister(value)
