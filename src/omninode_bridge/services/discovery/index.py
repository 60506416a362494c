"""The live in-memory index: which tools can take an operation right now.

A tool is *routable* for an operation when ``capabilities.operations`` lists
it, ``endpoints`` has a URL for it, its last heartbeat is within the TTL by
the database clock, and it is neither *excluded* (active health checks, or any
other policy that calls :meth:`ToolIndex.set_excluded`) nor *ejected* (passive
failure detection). Every routable tool sits in one pool per operation, so
choosing costs O(1) however many tools are registered:

- expiry is a heap of heartbeat deadlines, checked on every choice: a tool
  whose heartbeat ages past the TTL leaves the pools before anything is chosen;
- ejections end the same way, from a heap of deadlines;
- exclusions and registrations change the pools when they happen.

The index does no I/O and is not thread-safe: one event loop owns it. Feeding
it (initial load, change feed, heartbeat refresh) is the job of
:mod:`omninode_bridge.services.discovery.sync`.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Container, Set
from datetime import UTC, datetime

from omninode_bridge.models import ModelToolRegistration
from omninode_bridge.models.timestamps import to_utc
from omninode_bridge.services.discovery.balancer import PowerOfTwoBalancer
from omninode_bridge.services.discovery.clock import DbClock
from omninode_bridge.services.discovery.explain import (
    CRITICAL_REASON,
    RoutingExplanation,
    ToolVerdict,
    db_time,
)
from omninode_bridge.services.discovery.pools import IndexedTool, Pool, declared_operations

__all__ = ["IndexedTool", "ToolIndex"]

NEVER = float("-inf")
_NAMES_SHOWN = 3


class ToolIndex:
    """Registrations by tool id, and the routable ones by operation.

    ``ttl_seconds`` is the heartbeat TTL. Deadlines (expiry, ejection) are in
    database time from ``clock``.
    """

    def __init__(
        self, clock: DbClock, ttl_seconds: float, balancer: PowerOfTwoBalancer | None = None
    ) -> None:
        self.clock = clock
        self.ttl_seconds = ttl_seconds
        self.balancer = balancer if balancer is not None else PowerOfTwoBalancer()
        self._tools: dict[str, IndexedTool] = {}
        self._declared: dict[str, set[str]] = {}  # operation -> every tool listing it
        self._endpointless: dict[str, set[str]] = {}  # ... of which those without an endpoint
        self._pools: dict[str, Pool] = {}  # operation -> routable tools
        self._expiry: list[tuple[float, str]] = []
        self._expiry_key: dict[str, float] = {}  # the valid heap entry of each tool
        self._ejected: dict[str, float] = {}  # tool_id -> back at (database time)
        self._ejection_heap: list[tuple[float, str]] = []
        self._excluded: dict[str, str] = {}  # tool_id -> reason
        self._excluded_since: dict[str, float] = {}  # tool_id -> database time it began

    # -- reading ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, tool_id: object) -> bool:
        return tool_id in self._tools

    def get(self, tool_id: str) -> IndexedTool | None:
        """The indexed tool, routable or not; ``None`` when it is not registered."""
        return self._tools.get(tool_id)

    def tool_ids(self) -> set[str]:
        """Every registered tool id the index knows."""
        return set(self._tools)

    def registration_of(self, tool: IndexedTool) -> ModelToolRegistration:
        """``tool``'s registration with ``last_heartbeat`` set to the newest heartbeat seen.

        The model is shared (copied only when a newer heartbeat arrived): treat
        it as read-only.
        """
        if tool.expires_at > tool.model_expires_at:
            beat = datetime.fromtimestamp(tool.expires_at - self.ttl_seconds, UTC)
            tool.registration = tool.registration.model_copy(
                update={"last_heartbeat": to_utc(beat)}
            )
            tool.model_expires_at = tool.expires_at
        return tool.registration

    # -- registrations and heartbeats --------------------------------------------

    def upsert(self, registration: ModelToolRegistration) -> None:
        """Add or replace a registration; the newer of the two heartbeats is kept."""
        beat = registration.last_heartbeat
        expires_at = beat.timestamp() + self.ttl_seconds if beat is not None else NEVER
        model_expires_at = expires_at
        old = self._tools.get(registration.tool_id)
        if old is not None:
            expires_at = max(expires_at, old.expires_at)
            self._unpool(old)
            self._undeclare(old)
        operations = declared_operations(registration)
        routed = tuple(op for op in operations if registration.endpoints.get(op))
        tool = IndexedTool(registration, operations, routed, expires_at, model_expires_at)
        self._tools[tool.tool_id] = tool
        for op in operations:
            self._declared.setdefault(op, set()).add(tool.tool_id)
            if op not in routed:
                self._endpointless.setdefault(op, set()).add(tool.tool_id)
        self._place(tool, self.clock.now())

    def remove(self, tool_id: str) -> bool:
        """Forget ``tool_id`` (deleted); ``False`` when it was not indexed.

        Its ejection goes too; an exclusion stays (it is keyed by tool id and
        belongs to whoever set it).
        """
        tool = self._tools.pop(tool_id, None)
        if tool is None:
            return False
        self._unpool(tool)
        self._undeclare(tool)
        self._expiry_key.pop(tool_id, None)
        self._ejected.pop(tool_id, None)
        self.balancer.forget(tool_id)
        return True

    def retain(self, keep: Set[str]) -> list[str]:
        """Remove every tool not in ``keep`` (after a full reload); returns the removed ids."""
        gone = [tool_id for tool_id in self._tools if tool_id not in keep]
        for tool_id in gone:
            self.remove(tool_id)
        return gone

    def heartbeat(self, tool_id: str, heartbeat: float, *, exact: bool = False) -> bool:
        """Record a heartbeat at ``heartbeat`` (database epoch seconds); ``False`` if unknown.

        A heartbeat older than the one known is ignored unless ``exact``: a full
        read of the table is the truth, even when a heartbeat moved backwards.
        """
        tool = self._tools.get(tool_id)
        if tool is None:
            return False
        expires_at = heartbeat + self.ttl_seconds
        if expires_at == tool.expires_at or (expires_at < tool.expires_at and not exact):
            return True
        tool.expires_at = expires_at
        if expires_at < tool.model_expires_at:
            tool.model_expires_at = NEVER  # the model's heartbeat is now too new
        self._place(tool, self.clock.now())
        return True

    # -- exclusion (active health checks) and ejection (passive) -------------------

    def set_excluded(self, tool_id: str, reason: str) -> None:
        """Keep ``tool_id`` out of every choice until :meth:`clear_excluded`.

        The hook for active health checks (a ``critical`` tool) or any other
        policy. Keyed by tool id: it may precede the registration and outlives
        a deletion.
        """
        if self._excluded.get(tool_id) != reason:
            self._excluded_since[tool_id] = self.clock.now()
        self._excluded[tool_id] = reason
        tool = self._tools.get(tool_id)
        if tool is not None:
            self._place(tool, self.clock.now())

    def clear_excluded(self, tool_id: str) -> bool:
        """Let ``tool_id`` be chosen again; ``False`` when it was not excluded."""
        self._excluded_since.pop(tool_id, None)
        if self._excluded.pop(tool_id, None) is None:
            return False
        tool = self._tools.get(tool_id)
        if tool is not None:
            self._place(tool, self.clock.now())
        return True

    def excluded(self) -> dict[str, str]:
        """Excluded tool ids and their reasons (a copy)."""
        return dict(self._excluded)

    def eject(self, tool_id: str, seconds: float) -> None:
        """Take ``tool_id`` out of rotation for ``seconds`` (it failed to connect)."""
        if tool_id not in self._tools:
            return
        until = self.clock.now() + seconds
        self._ejected[tool_id] = until
        heapq.heappush(self._ejection_heap, (until, tool_id))
        self._place(self._tools[tool_id], self.clock.now())

    def restore(self, tool_id: str) -> bool:
        """End the ejection of ``tool_id`` now (it answered); ``False`` if it was not ejected."""
        if self._ejected.pop(tool_id, None) is None:
            return False
        tool = self._tools.get(tool_id)
        if tool is not None:
            self._place(tool, self.clock.now())
        return True

    def ejected(self) -> dict[str, float]:
        """Ejected tool ids and the seconds left until each comes back."""
        now = self.clock.now()
        return {tool_id: max(0.0, until - now) for tool_id, until in self._ejected.items()}

    # -- choosing ----------------------------------------------------------------------

    def pick(self, operation: str, avoid: Container[str] = ()) -> IndexedTool | None:
        """A routable tool for ``operation`` chosen by the balancer, not in ``avoid``.

        When none is routable: an ejected tool that would otherwise be
        routable (the one due back first, as a probe), else a live tool that
        declares the operation without an endpoint for it (the caller reports
        that), else ``None``.
        """
        now = self.clock.now()
        if self._expiry and self._expiry[0][0] <= now:
            self._expire(now)
        if self._ejection_heap and self._ejection_heap[0][0] <= now:
            self._readmit(now)
        pool = self._pools.get(operation)
        if pool is not None:
            tool_id = self.balancer.choose(pool.ids, avoid)
            if tool_id is not None:
                return self._tools[tool_id]
        return self._fallback(operation, avoid, now)

    def routable(self, operation: str) -> list[IndexedTool]:
        """Every tool routable for ``operation`` now, by tool id."""
        now = self.clock.now()
        if self._expiry and self._expiry[0][0] <= now:
            self._expire(now)
        if self._ejection_heap and self._ejection_heap[0][0] <= now:
            self._readmit(now)
        pool = self._pools.get(operation)
        return [self._tools[i] for i in sorted(pool.ids)] if pool is not None else []

    def explain(self, operation: str) -> str:
        """Why nothing is routable for ``operation``: what each declaring tool lacks."""
        return self.explain_routing(operation).summary

    def explain_routing(self, operation: str, limit: int = 5) -> RoutingExplanation:
        """Every declaring tool's verdict for ``operation`` now (the first ``limit`` listed)."""
        ids = self._declared.get(operation)
        if not ids:
            return RoutingExplanation(
                operation, 0, 0, "no registered tool lists it in capabilities.operations"
            )
        now = self.clock.now()
        verdicts = [self._verdict(self._tools[i], operation, now) for i in sorted(ids)]
        out = [v for v in verdicts if v.reason != "routable"]
        routable = len(verdicts) - len(out)
        by_reason: dict[str, list[str]] = {}
        for verdict in out:
            name = verdict.tool_id
            if verdict.reason == "excluded":
                name = f"{name}: {verdict.detail}"
            by_reason.setdefault(verdict.reason, []).append(name)
        parts = [_listed(by_reason.get(reason, []), what) for reason, what in self._wording()]
        noun = "tool lists" if len(ids) == 1 else "tools list"
        summary = f"{len(ids)} registered {noun} it: " + "; ".join(
            [f"{routable} routable"] * bool(routable) + [p for p in parts if p]
        )
        shown = (out + [v for v in verdicts if v.reason == "routable"])[:limit]
        return RoutingExplanation(operation, len(ids), routable, summary, tuple(shown))

    def _wording(self) -> list[tuple[str, str]]:
        return [
            ("stale", f"stale (no heartbeat within {self.ttl_seconds:g}s)"),
            ("critical", "critical (failing health checks)"),
            ("excluded", "excluded"),
            ("ejected", "ejected after failing to connect"),
            ("no_endpoint", "without an endpoint for it"),
        ]

    def _verdict(self, tool: IndexedTool, operation: str, now: float) -> ToolVerdict:
        tool_id = tool.tool_id
        if tool.expires_at <= now:
            return ToolVerdict(
                tool_id,
                "stale",
                f"no heartbeat within the {self.ttl_seconds:g}s TTL",
                since=db_time(tool.expires_at),
            )
        if tool_id in self._excluded:
            reason = self._excluded[tool_id]
            return ToolVerdict(
                tool_id,
                "critical" if reason == CRITICAL_REASON else "excluded",
                reason,
                since=db_time(self._excluded_since.get(tool_id)),
            )
        if tool_id in self._ejected:
            return ToolVerdict(
                tool_id,
                "ejected",
                "ejected after failing to connect",
                until=db_time(self._ejected[tool_id]),
            )
        if operation not in tool.routed:
            return ToolVerdict(tool_id, "no_endpoint", f"has no endpoint for {operation!r}")
        return ToolVerdict(tool_id, "routable", "routable now")

    # -- internals -------------------------------------------------------------------

    def _routable_now(self, tool: IndexedTool, now: float) -> bool:
        tool_id = tool.tool_id
        return (
            tool.expires_at > now and tool_id not in self._excluded and tool_id not in self._ejected
        )

    def _place(self, tool: IndexedTool, now: float) -> None:
        """Put ``tool`` in or out of the pools as its state says; schedule its expiry."""
        wanted = self._routable_now(tool, now)
        if wanted and not tool.pooled:
            for op in tool.routed:
                pool = self._pools.get(op)
                if pool is None:
                    pool = self._pools[op] = Pool()
                pool.add(tool.tool_id)
            tool.pooled = True
        elif not wanted and tool.pooled:
            self._unpool(tool)
        if tool.expires_at > now:
            key = self._expiry_key.get(tool.tool_id)
            if key is None or tool.expires_at < key:
                heapq.heappush(self._expiry, (tool.expires_at, tool.tool_id))
                self._expiry_key[tool.tool_id] = tool.expires_at

    def _unpool(self, tool: IndexedTool) -> None:
        if not tool.pooled:
            return
        for op in tool.routed:
            pool = self._pools.get(op)
            if pool is not None:
                pool.discard(tool.tool_id)
                if not pool.ids:
                    del self._pools[op]
        tool.pooled = False

    def _undeclare(self, tool: IndexedTool) -> None:
        for op in tool.operations:
            for table in (self._declared, self._endpointless):
                members = table.get(op)
                if members is not None:
                    members.discard(tool.tool_id)
                    if not members:
                        del table[op]

    def _expire(self, now: float) -> None:
        """Pop every deadline that passed: stale tools leave the pools."""
        heap, keys = self._expiry, self._expiry_key
        while heap and heap[0][0] <= now:
            key, tool_id = heapq.heappop(heap)
            if keys.get(tool_id) != key:
                continue  # superseded by an earlier deadline, or the tool left
            del keys[tool_id]
            tool = self._tools.get(tool_id)
            if tool is not None:
                # Stale: out of the pools. Heartbeated since: rescheduled.
                self._place(tool, now)

    def _readmit(self, now: float) -> None:
        """Pop every ejection that ended: those tools return to the pools."""
        heap = self._ejection_heap
        while heap and heap[0][0] <= now:
            until, tool_id = heapq.heappop(heap)
            if self._ejected.get(tool_id) != until:
                continue  # restored early, or ejected again since
            del self._ejected[tool_id]
            tool = self._tools.get(tool_id)
            if tool is not None:
                self._place(tool, now)

    def _fallback(self, operation: str, avoid: Container[str], now: float) -> IndexedTool | None:
        best: IndexedTool | None = None
        best_until = 0.0
        for tool_id, until in self._ejected.items():
            tool = self._tools.get(tool_id)
            if (
                tool is not None
                and operation in tool.routed
                and tool_id not in avoid
                and tool_id not in self._excluded
                and tool.expires_at > now
                and (best is None or until < best_until)
            ):
                best, best_until = tool, until
        if best is not None:
            return best
        for tool_id in _sorted_small(self._endpointless.get(operation, ())):
            tool = self._tools[tool_id]
            if tool.expires_at > now and tool_id not in self._excluded and tool_id not in avoid:
                return tool
        return None


def _sorted_small(ids: Collection[str]) -> list[str]:
    # Deterministic order for the error path; these sets are small in practice.
    return sorted(ids)


def _listed(names: list[str], what: str) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:_NAMES_SHOWN])
    more = f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else ""
    return f"{len(names)} {what} ({shown}{more})"
