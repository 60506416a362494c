"""Why discovery would or would not pick each tool for an operation: one explanation, every face.

The HTTP API's 404, the Python ``NoRoutableToolError``, ``RegistryClient``,
the console and the MCP ``discover`` tool all give this same account: how
many tools declare the operation, how many are routable, and for the first
few that are not, why (``no_endpoint``, ``stale`` since T, ``critical`` since
T, ``excluded``, ``ejected`` until T).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "CRITICAL_REASON",
    "REASONS",
    "RoutingExplanation",
    "ToolVerdict",
    "account",
    "db_time",
]

# The exclusion the health checks' feed events set (other exclusions are other policies').
CRITICAL_REASON = "health check: critical"
REASONS = ("routable", "no_endpoint", "stale", "critical", "excluded", "ejected")
_NAMES_SHOWN = 3


def db_time(epoch: float | None) -> datetime | None:
    """A database-clock epoch as an aware UTC datetime (``None`` stays ``None``)."""
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


@dataclass(frozen=True, slots=True)
class ToolVerdict:
    """One declaring tool: routable, or the first reason it is not (in the order of REASONS)."""

    tool_id: str
    reason: str
    detail: str
    since: datetime | None = None
    until: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 UTC, absent ones left out."""
        out: dict[str, Any] = {
            "tool_id": self.tool_id,
            "reason": self.reason,
            "detail": self.detail,
        }
        if self.since is not None:
            out["since"] = self.since.isoformat().replace("+00:00", "Z")
        if self.until is not None:
            out["until"] = self.until.isoformat().replace("+00:00", "Z")
        return out


@dataclass(frozen=True, slots=True)
class RoutingExplanation:
    """The account of one operation; ``tools`` holds at most the limit asked for, the
    unroutable first, and ``declared``/``routable`` count them all."""

    operation: str
    declared: int
    routable: int
    summary: str
    tools: tuple[ToolVerdict, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "declared": self.declared,
            "routable": self.routable,
            "summary": self.summary,
            "tools": [t.as_dict() for t in self.tools],
        }


def account(
    operation: str,
    *,
    declared: int,
    routable: int,
    by_reason: dict[str, list[str]],
    listed: list[ToolVerdict],
    excluded: Mapping[str, str],
    ttl_seconds: float,
) -> RoutingExplanation:
    """The explanation of an operation that ``declared`` tools list, ``routable`` of them
    routable; ``by_reason``: the others' ids by reason (in any order); ``listed``: the
    verdicts to show, the unroutable first, each group by tool id; ``excluded``: why
    each excluded tool is (named beside it)."""
    if not declared:
        return RoutingExplanation(
            operation, 0, 0, "no registered tool lists it in capabilities.operations"
        )
    wording = [
        ("stale", f"stale (no heartbeat within {ttl_seconds:g}s)"),
        ("critical", "critical (failing health checks)"),
        ("excluded", "excluded"),
        ("ejected", "ejected after failing to connect"),
        ("no_endpoint", "without an endpoint for it"),
    ]
    parts = [
        _listed(by_reason.get(reason, []), what, excluded if reason == "excluded" else {})
        for reason, what in wording
    ]
    noun = "tool lists" if declared == 1 else "tools list"
    summary = f"{declared} registered {noun} it: " + "; ".join(
        [f"{routable} routable"] * bool(routable) + [p for p in parts if p]
    )
    return RoutingExplanation(operation, declared, routable, summary, tuple(listed))


def _listed(ids: list[str], what: str, details: Mapping[str, str]) -> str:
    """``N what (a, b, c and M more)``: the first few ids in order, each with its detail
    beside it when ``details`` has one."""
    if not ids:
        return ""
    first = heapq.nsmallest(_NAMES_SHOWN, ids)
    shown = ", ".join(f"{i}: {details[i]}" if i in details else i for i in first)
    more = f" and {len(ids) - _NAMES_SHOWN} more" if len(ids) > _NAMES_SHOWN else ""
    return f"{len(ids)} {what} ({shown}{more})"
