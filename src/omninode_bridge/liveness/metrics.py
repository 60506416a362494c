"""Prometheus metrics of the liveness passes, created on a registry the caller passes in.

The server passes its own registry, so these appear on ``/metrics`` beside the
HTTP metrics; the CLI passes a throwaway one. Names follow Prometheus
conventions (counters end in ``_total``, units in the name).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from omninode_bridge.metrics_support import MetricSet, counter, gauge, histogram

__all__ = ["LivenessMetrics"]

CHECK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LivenessMetrics(MetricSet):
    """Reaper, health-check and leader-election metrics of one process.

    Every known label value exists from the start, so dashboards see zeros rather than gaps.
    """

    reaped = counter(
        "toolreg_reaper_removed_tools_total",
        "Tools removed by the reaper (no heartbeat within the retention).",
    )
    self_preservation = gauge(
        "toolreg_reaper_self_preservation_engaged",
        "1 while the reaper holds back because too large a share of tools is due.",
    )
    due = gauge(
        "toolreg_reaper_due_tools",
        "Tools past the retention at the last reaper pass (removed or held back).",
    )
    heartbeat_transitions = counter(
        "toolreg_heartbeat_transitions_total",
        "Heartbeat freshness transitions recorded by this process, by kind.",
        ["kind"],
        known=("stale", "healthy"),
    )
    checks = counter(
        "toolreg_health_checks_total",
        "Active health checks by result (success or failure).",
        ["result"],
        known=("success", "failure"),
    )
    check_latency = histogram(
        "toolreg_health_check_duration_seconds",
        "Latency of one active health check (failures included).",
        buckets=CHECK_BUCKETS,
    )
    check_transitions = counter(
        "toolreg_health_check_transitions_total",
        "Check status transitions recorded by this process, by kind.",
        ["kind"],
        known=("critical", "passing"),
    )
    check_pass_seconds = gauge(
        "toolreg_health_check_pass_seconds", "How long the last complete health-check pass took."
    )
    checks_in_flight = gauge(
        "toolreg_health_checks_in_flight",
        "Active health checks in flight now (at most TOOLREG_CHECK_CONCURRENCY).",
    )
    check_delay = histogram(
        "toolreg_health_check_delay_seconds",
        "How late a scheduled health check began after it fell due (waiting for a slot).",
        buckets=CHECK_BUCKETS,
    )
    check_tools = gauge(
        "toolreg_health_check_tools",
        "Tools with a health endpoint at the last read, by scheduling state: checked, "
        "suspect (critical or hanging: at most half of the slots), stale (not checked).",
        ["state"],
        known=("checked", "suspect", "stale"),
    )
    passes = counter(
        "toolreg_liveness_passes_total",
        "Liveness passes run by this process, by kind (reap, check).",
        ["kind"],
        known=("reap", "check"),
    )
    pass_errors = counter(
        "toolreg_liveness_pass_errors_total",
        "Liveness passes that failed (retried next interval), by kind.",
        ["kind"],
        known=("reap", "check"),
    )
    leader = gauge(
        "toolreg_liveness_leader",
        "1 while this process is the leader that runs the reaper and the checks.",
    )
    lease_generation = gauge(
        "toolreg_liveness_lease_generation",
        "Generation of the liveness lease this process last held (its fencing token).",
    )
    deposed = counter(
        "toolreg_liveness_leader_deposed_total",
        "Times this process stepped down because its lease expired or was taken over.",
    )
    leader_changes = counter(
        "toolreg_liveness_leader_elections_total", "Times this process became the leader."
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
