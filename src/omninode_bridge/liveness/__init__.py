"""Liveness: the reaper, active health checks with anti-flap, health history, one leader.

Layered above the services: it reads and writes the registry through a
PostgresClient, with SQL in ``services/sql/liveness.sql``.
"""

from __future__ import annotations

from omninode_bridge.liveness.checker import (
    AntiFlap,
    CheckReport,
    CheckResult,
    CheckState,
    CheckStatus,
    HealthChecker,
)
from omninode_bridge.liveness.history import HealthHistory, ToolHealth
from omninode_bridge.liveness.leader import (
    LEASE_NAME,
    LIVENESS_LOCK_KEY,
    Fence,
    LeaderElection,
    LeadershipLostError,
)
from omninode_bridge.liveness.metrics import LivenessMetrics
from omninode_bridge.liveness.probe import ProbeResult, make_check_client, probe
from omninode_bridge.liveness.reaper import DueTool, Reaper, ReapReport
from omninode_bridge.liveness.runner import LivenessRunner
from omninode_bridge.liveness.scheduler import CheckScheduler

__all__ = [
    "LEASE_NAME",
    "LIVENESS_LOCK_KEY",
    "AntiFlap",
    "CheckReport",
    "CheckResult",
    "CheckScheduler",
    "CheckState",
    "CheckStatus",
    "DueTool",
    "Fence",
    "HealthChecker",
    "HealthHistory",
    "LeaderElection",
    "LeadershipLostError",
    "LivenessMetrics",
    "LivenessRunner",
    "ProbeResult",
    "ReapReport",
    "Reaper",
    "ToolHealth",
    "make_check_client",
    "probe",
]
