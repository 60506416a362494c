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

Only routing facts are kept, in columns by slot (see
:mod:`~omninode_bridge.services.discovery.pools`): a few hundred bytes a
tool, so a million tools fit in a few hundred MB. Per-operation pools and
lists of declaring tools are plain lists of tool ids; each tool records its
position in each (an ``array``), so leaving one is a swap-remove.

The index does no I/O and is not thread-safe: one event loop owns it. Feeding
it (initial load, change feed, heartbeat refresh) is the job of
:mod:`omninode_bridge.services.discovery.sync`.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Collection, Container, Mapping, Set
from typing import Any

from omninode_bridge.models import ModelToolRegistration
from omninode_bridge.services.discovery.balancer import PowerOfTwoBalancer
from omninode_bridge.services.discovery.clock import DbClock
from omninode_bridge.services.discovery.deadlines import Deadlines
from omninode_bridge.services.discovery.endpoints import Endpoints, TemplateTable
from omninode_bridge.services.discovery.explain import (
    CRITICAL_REASON,
    RoutingExplanation,
    ToolVerdict,
    account,
    db_time,
)
from omninode_bridge.services.discovery.pools import IndexedTool, declared_operations

__all__ = ["IndexedTool", "ToolIndex"]

NEVER = float("-inf")
_NO_POSITIONS = array("i")


class ToolIndex:
    """Routing facts by tool id, and the routable tools by operation.

    ``ttl_seconds`` is the heartbeat TTL. Deadlines (expiry, ejection) are in
    database time from ``clock``.
    """

    def __init__(
        self, clock: DbClock, ttl_seconds: float, balancer: PowerOfTwoBalancer | None = None
    ) -> None:
        self.clock = clock
        self.ttl_seconds = ttl_seconds
        self.balancer = balancer if balancer is not None else PowerOfTwoBalancer()
        self._templates = TemplateTable()
        # Columns by slot; a removed tool's slot is reused.
        self._slot: dict[str, int] = {}
        self._ids: list[str] = []
        self._ops: list[tuple[str, ...]] = []
        self._routed: list[tuple[str, ...]] = []
        self._endpoints: list[Endpoints] = []
        # Positions: in _declared[op] for each of ops, then in _pools[op] for each of routed.
        self._pos: list[array[int]] = []
        self._exp = array("d")
        self._pooled = bytearray()
        self._free: list[int] = []
        self._declared: dict[str, list[str]] = {}  # operation -> every tool listing it
        self._endpointless: dict[str, set[str]] = {}  # ... of which those without an endpoint
        self._pools: dict[str, list[str]] = {}  # operation -> routable tools
        self._expiry = Deadlines()
        self._ejected: dict[str, float] = {}  # tool_id -> back at (database time)
        self._ejection_heap: list[tuple[float, str]] = []
        self._excluded: dict[str, str] = {}  # tool_id -> reason
        self._excluded_since: dict[str, float] = {}  # tool_id -> database time it began

    # -- reading ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, tool_id: object) -> bool:
        return tool_id in self._slot

    def get(self, tool_id: str) -> IndexedTool | None:
        """The indexed tool, routable or not; ``None`` when it is not registered."""
        slot = self._slot.get(tool_id)
        return self._tool(slot) if slot is not None else None

    def tool_ids(self) -> set[str]:
        """Every registered tool id the index knows."""
        return set(self._slot)

    def _tool(self, slot: int) -> IndexedTool:
        return IndexedTool(
            self._ids[slot],
            self._ops[slot],
            self._routed[slot],
            self._exp[slot],
            self._endpoints[slot],
        )

    # -- registrations and heartbeats --------------------------------------------

    def upsert(self, registration: ModelToolRegistration) -> None:
        """Add or replace a registration; the newer of the two heartbeats is kept."""
        beat = registration.last_heartbeat
        self.put(
            registration.tool_id,
            registration.capabilities.get("operations"),
            registration.endpoints,
            beat.timestamp() if beat is not None else None,
        )

    def put(
        self,
        tool_id: str,
        operations: Any,
        endpoints: Mapping[str, Any],
        heartbeat: float | None,
    ) -> None:
        """:meth:`upsert` from the routing columns alone (the initial load reads only these).

        ``operations`` is ``capabilities.operations`` as stored (only the
        strings of a list count), ``endpoints`` the endpoint object, and
        ``heartbeat`` the last heartbeat in database epoch seconds.
        """
        ops = declared_operations(operations)
        routed = tuple([op for op in ops if endpoints.get(op)])
        if len(routed) == len(ops):
            routed = ops  # one tuple, not two
        expires_at = heartbeat + self.ttl_seconds if heartbeat is not None else NEVER
        slot = self._slot.get(tool_id)
        if slot is not None:
            expires_at = max(expires_at, self._exp[slot])
            tool_id = self._ids[slot]
            self._unpool(slot)
            self._undeclare(slot)
        else:
            slot = self._allocate(tool_id)
        self._ops[slot] = ops
        self._routed[slot] = routed
        self._endpoints[slot] = self._templates.encode(tool_id, routed, endpoints)
        self._exp[slot] = expires_at
        positions = self._pos[slot] = array("i", [-1]) * (len(ops) + len(routed))
        for k, op in enumerate(ops):
            members = self._declared.get(op)
            if members is None:
                members = self._declared[op] = []
            positions[k] = len(members)
            members.append(tool_id)
            if routed is not ops and op not in routed:
                self._endpointless.setdefault(op, set()).add(tool_id)
        self._place(slot, self.clock.now())

    def _allocate(self, tool_id: str) -> int:
        if self._free:
            slot = self._free.pop()
            self._ids[slot] = tool_id
        else:
            slot = len(self._ids)
            self._ids.append(tool_id)
            self._ops.append(())
            self._routed.append(())
            self._endpoints.append(())
            self._pos.append(_NO_POSITIONS)
            self._exp.append(NEVER)
            self._pooled.append(0)
        self._slot[tool_id] = slot
        return slot

    def remove(self, tool_id: str) -> bool:
        """Forget ``tool_id`` (deleted); ``False`` when it was not indexed.

        Its ejection goes too; an exclusion stays (it is keyed by tool id and
        belongs to whoever set it).
        """
        slot = self._slot.get(tool_id)
        if slot is None:
            return False
        self._unpool(slot)
        self._undeclare(slot)
        del self._slot[tool_id]
        self._expiry.cancel(slot)
        self._ids[slot] = ""
        self._ops[slot] = self._routed[slot] = self._endpoints[slot] = ()
        self._pos[slot] = _NO_POSITIONS
        self._exp[slot] = NEVER
        self._free.append(slot)
        self._ejected.pop(tool_id, None)
        self.balancer.forget(tool_id)
        return True

    def retain(self, keep: Set[str]) -> list[str]:
        """Remove every tool not in ``keep`` (after a full reload); returns the removed ids."""
        gone = [tool_id for tool_id in self._slot if tool_id not in keep]
        for tool_id in gone:
            self.remove(tool_id)
        return gone

    def heartbeat(self, tool_id: str, heartbeat: float, *, exact: bool = False) -> bool:
        """Record a heartbeat at ``heartbeat`` (database epoch seconds); ``False`` if unknown.

        A heartbeat older than the one known is ignored unless ``exact``: a full
        read of the table is the truth, even when a heartbeat moved backwards.
        """
        slot = self._slot.get(tool_id)
        if slot is None:
            return False
        expires_at = heartbeat + self.ttl_seconds
        known = self._exp[slot]
        if expires_at == known or (expires_at < known and not exact):
            return True
        self._exp[slot] = expires_at
        self._place(slot, self.clock.now())
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
        self._replace(tool_id)

    def clear_excluded(self, tool_id: str) -> bool:
        """Let ``tool_id`` be chosen again; ``False`` when it was not excluded."""
        self._excluded_since.pop(tool_id, None)
        if self._excluded.pop(tool_id, None) is None:
            return False
        self._replace(tool_id)
        return True

    def excluded(self) -> dict[str, str]:
        """Excluded tool ids and their reasons (a copy)."""
        return dict(self._excluded)

    def eject(self, tool_id: str, seconds: float) -> None:
        """Take ``tool_id`` out of rotation for ``seconds`` (it failed to connect)."""
        if tool_id not in self._slot:
            return
        until = self.clock.now() + seconds
        self._ejected[tool_id] = until
        heapq.heappush(self._ejection_heap, (until, tool_id))
        self._replace(tool_id)

    def restore(self, tool_id: str) -> bool:
        """End the ejection of ``tool_id`` now (it answered); ``False`` if it was not ejected."""
        if self._ejected.pop(tool_id, None) is None:
            return False
        self._replace(tool_id)
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
        ejections = self._ejection_heap
        if self._expiry.due(now) or (ejections and ejections[0][0] <= now):
            self._catch_up(now)
        pool = self._pools.get(operation)
        if pool is not None:
            tool_id = self.balancer.choose(pool, avoid)
            if tool_id is not None:
                return self._tool(self._slot[tool_id])
        return self._fallback(operation, avoid, now)

    def routable(self, operation: str) -> list[IndexedTool]:
        """Every tool routable for ``operation`` now, by tool id."""
        self._catch_up(self.clock.now())
        pool = self._pools.get(operation)
        slot = self._slot
        return [self._tool(slot[i]) for i in sorted(pool)] if pool is not None else []

    def _catch_up(self, now: float) -> None:
        if self._expiry.due(now):
            for slot in self._expiry.pop_due(now):
                self._place(slot, now)  # stale: out of the pools; heartbeated: rescheduled
        if self._ejection_heap and self._ejection_heap[0][0] <= now:
            self._readmit(now)

    def explain(self, operation: str) -> str:
        """Why nothing is routable for ``operation``: what each declaring tool lacks."""
        return self.explain_routing(operation).summary

    def explain_routing(self, operation: str, limit: int = 5) -> RoutingExplanation:
        """Every declaring tool's verdict for ``operation`` now (the first ``limit`` listed).

        The routable ones are the operation's pool (counted, not walked); only the
        tools outside it are judged one by one, and only those listed become
        verdicts with their times: a well operation of a large registry costs a set
        difference, not a verdict per tool.
        """
        now = self.clock.now()
        self._catch_up(now)  # the pools as they are now: what pick() would choose from
        declared = self._declared.get(operation, [])
        pool = self._pools.get(operation, [])
        unroutable = set(declared).difference(pool) if len(pool) < len(declared) else set()
        by_reason: dict[str, list[str]] = {}
        for tool_id in unroutable:
            by_reason.setdefault(self._reason(tool_id, operation, now, pooled=False), []).append(
                tool_id
            )
        listed = heapq.nsmallest(limit, unroutable)
        listed += heapq.nsmallest(limit - len(listed), pool)
        return account(
            operation,
            declared=len(declared),
            routable=len(pool),
            by_reason=by_reason,
            listed=[self._verdict(i, operation, now, pooled=i not in unroutable) for i in listed],
            excluded=self._excluded,
            ttl_seconds=self.ttl_seconds,
        )

    def _reason(self, tool_id: str, operation: str, now: float, *, pooled: bool) -> str:
        """The first of REASONS that applies to ``tool_id`` for ``operation`` now;
        ``pooled``: whether it is in the operation's pool (out of it, it is never
        routable: its expiry was taken at a clock reading a few ms later than ``now``)."""
        slot = self._slot[tool_id]
        if self._exp[slot] <= now:
            return "stale"
        excluded = self._excluded.get(tool_id)
        if excluded is not None:
            return "critical" if excluded == CRITICAL_REASON else "excluded"
        if tool_id in self._ejected:
            return "ejected"
        if operation not in self._routed[slot]:
            return "no_endpoint"
        return "routable" if pooled else "stale"

    def _verdict(self, tool_id: str, operation: str, now: float, *, pooled: bool) -> ToolVerdict:
        """:meth:`_reason` with its words and times."""
        reason = self._reason(tool_id, operation, now, pooled=pooled)
        if reason == "stale":
            expires_at = self._exp[self._slot[tool_id]]
            return ToolVerdict(
                tool_id,
                reason,
                f"no heartbeat within the {self.ttl_seconds:g}s TTL",
                since=db_time(expires_at) if expires_at != NEVER else None,
            )
        if reason in ("critical", "excluded"):
            since = db_time(self._excluded_since.get(tool_id))
            return ToolVerdict(tool_id, reason, self._excluded[tool_id], since=since)
        if reason == "ejected":
            until = db_time(self._ejected[tool_id])
            return ToolVerdict(tool_id, reason, "ejected after failing to connect", until=until)
        if reason == "no_endpoint":
            return ToolVerdict(tool_id, reason, f"has no endpoint for {operation!r}")
        return ToolVerdict(tool_id, reason, "routable now")

    # -- internals -------------------------------------------------------------------

    def _replace(self, tool_id: str) -> None:
        slot = self._slot.get(tool_id)
        if slot is not None:
            self._place(slot, self.clock.now())

    def _place(self, slot: int, now: float) -> None:
        """Put the tool in or out of the pools as its state says; schedule its expiry."""
        tool_id = self._ids[slot]
        expires_at = self._exp[slot]
        wanted = expires_at > now and tool_id not in self._excluded and tool_id not in self._ejected
        if wanted and not self._pooled[slot]:
            positions = self._pos[slot]
            base = len(self._ops[slot])
            pools = self._pools
            for j, op in enumerate(self._routed[slot]):
                pool = pools.get(op)
                if pool is None:
                    pool = pools[op] = []
                positions[base + j] = len(pool)
                pool.append(tool_id)
            self._pooled[slot] = 1
        elif not wanted and self._pooled[slot]:
            self._unpool(slot)
        if expires_at > now:
            self._expiry.schedule(slot, expires_at)

    def _unpool(self, slot: int) -> None:
        if not self._pooled[slot]:
            return
        base = len(self._ops[slot])
        for j, op in enumerate(self._routed[slot]):
            self._take_out(self._pools, op, self._pos[slot][base + j], pooled=True)
        self._pooled[slot] = 0

    def _undeclare(self, slot: int) -> None:
        tool_id = self._ids[slot]
        for k, op in enumerate(self._ops[slot]):
            self._take_out(self._declared, op, self._pos[slot][k], pooled=False)
            members = self._endpointless.get(op)
            if members is not None:
                members.discard(tool_id)
                if not members:
                    del self._endpointless[op]

    def _take_out(self, table: dict[str, list[str]], op: str, at: int, *, pooled: bool) -> None:
        """Swap-remove position ``at`` of ``table[op]``; record the moved tool's new position."""
        members = table[op]
        last = members.pop()
        if at < len(members):
            members[at] = last
            moved = self._slot[last]
            if pooled:
                k = len(self._ops[moved]) + self._routed[moved].index(op)
            else:
                k = self._ops[moved].index(op)
            self._pos[moved][k] = at
        elif not members:
            del table[op]

    def _readmit(self, now: float) -> None:
        """Pop every ejection that ended: those tools return to the pools."""
        heap = self._ejection_heap
        while heap and heap[0][0] <= now:
            until, tool_id = heapq.heappop(heap)
            if self._ejected.get(tool_id) != until:
                continue  # restored early, or ejected again since
            del self._ejected[tool_id]
            slot = self._slot.get(tool_id)
            if slot is not None:
                self._place(slot, now)

    def _fallback(self, operation: str, avoid: Container[str], now: float) -> IndexedTool | None:
        best: int | None = None
        best_until = 0.0
        for tool_id, until in self._ejected.items():
            slot = self._slot.get(tool_id)
            if (
                slot is not None
                and operation in self._routed[slot]
                and tool_id not in avoid
                and tool_id not in self._excluded
                and self._exp[slot] > now
                and (best is None or until < best_until)
            ):
                best, best_until = slot, until
        if best is not None:
            return self._tool(best)
        for tool_id in _sorted_small(self._endpointless.get(operation, ())):
            slot = self._slot[tool_id]
            if self._exp[slot] > now and tool_id not in self._excluded and tool_id not in avoid:
                return self._tool(slot)
        return None


def _sorted_small(ids: Collection[str]) -> list[str]:
    # Deterministic order for the error path; these sets are small in practice.
    return sorted(ids)
