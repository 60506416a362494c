"""Prometheus metrics of the discovery bridges, on a registry passed in.

Every metric is labelled by ``source`` (``etcd:/omninode/tools/``), so one
:class:`BridgeMetrics` can serve several bridges. Label values are bounded: an
invalid value is counted by its top-level field, never by key or content.
"""

from __future__ import annotations

from omninode_bridge.metrics_support import MetricSet, counter, gauge

__all__ = ["BridgeMetrics"]


class BridgeMetrics(MetricSet):
    """The bridge's counters and gauges; ``registry`` defaults to a fresh private one."""

    applied = counter(
        "toolreg_autodiscovery_applied_total",
        "Changes written to the registry, by action "
        "(registered, refreshed, removed, marked_stale).",
        ["source", "action"],
    )
    invalid = counter(
        "toolreg_autodiscovery_invalid_values_total",
        "Announcements skipped because their value is not a valid registration (each value "
        "once), by the first field at fault (value: not a JSON object, or a field that a "
        "registration does not have).",
        ["source", "field"],
    )
    conflicts = counter(
        "toolreg_autodiscovery_conflicts_total",
        "Announcements skipped because another writer owns that tool_id.",
        ["source"],
    )
    claims_held = counter(
        "toolreg_autodiscovery_claims_held_total",
        "Announcements of a tool_id that another owner released within the hold: "
        "not claimed without an admin's consent (toolreg autodiscover allow).",
        ["source"],
    )
    held_claims = gauge(
        "toolreg_autodiscovery_held_claims",
        "Announced tool_ids whose claim is held now, waiting for consent.",
        ["source"],
    )
    resyncs = counter(
        "toolreg_autodiscovery_resyncs_total",
        "Full list-and-reconcile passes completed, by cause (start, history_lost).",
        ["source", "cause"],
    )
    failures = counter(
        "toolreg_autodiscovery_failures_total",
        "Failures the bridge retried after a backoff, by side (source, registry).",
        ["source", "side"],
    )
    keys = gauge(
        "toolreg_autodiscovery_keys",
        "Announcements present in the source (valid or not).",
        ["source"],
    )
    revision = gauge(
        "toolreg_autodiscovery_revision",
        "The last source revision applied to the registry.",
        ["source"],
    )
    connected = gauge(
        "toolreg_autodiscovery_connected",
        "1 while the bridge follows the source, 0 while it retries.",
        ["source"],
    )
