"""Heartbeat deadlines of the index's tools: a heap of (microsecond, slot) packed in one int.

A tuple of a float and an int costs about 100 bytes; one int holding both
costs 36. Each slot has at most one *valid* entry (the earliest scheduled);
entries superseded or cancelled stay in the heap and are skipped when popped.
A deadline is rounded down to the microsecond, so an entry is due no later
than its deadline: the caller re-checks the exact deadline and may be woken
up to a microsecond early.
"""

from __future__ import annotations

import heapq
import math
from array import array

__all__ = ["Deadlines"]

_NONE = -1
_SLOT_BITS = 32


class Deadlines:
    """Deadlines (database epoch seconds) per slot (a small non-negative int)."""

    __slots__ = ("_heap", "_valid")

    def __init__(self) -> None:
        self._heap: list[int] = []
        self._valid = array("q")  # slot -> microsecond of its valid entry, or _NONE

    def __len__(self) -> int:
        """Entries in the heap, valid or not."""
        return len(self._heap)

    def schedule(self, slot: int, deadline: float) -> None:
        """Make sure ``slot`` is due no later than ``deadline`` (a later one is ignored)."""
        valid = self._valid
        if slot >= len(valid):
            valid.extend([_NONE] * (slot + 1 - len(valid)))
        micro = math.floor(deadline * 1e6)
        current = valid[slot]
        if current == _NONE or micro < current:
            valid[slot] = micro
            heapq.heappush(self._heap, micro << _SLOT_BITS | slot)

    def cancel(self, slot: int) -> None:
        """Forget ``slot``'s deadline (its entries are skipped from now on)."""
        if slot < len(self._valid):
            self._valid[slot] = _NONE

    def due(self, now: float) -> bool:
        """Whether some entry is due at ``now`` (cheap: the caller's hot path)."""
        heap = self._heap
        return bool(heap) and (heap[0] >> _SLOT_BITS) <= now * 1e6

    def pop_due(self, now: float) -> list[int]:
        """The slots whose valid entry is due at ``now``; they are no longer scheduled."""
        heap, valid = self._heap, self._valid
        limit = now * 1e6
        mask = (1 << _SLOT_BITS) - 1
        out: list[int] = []
        while heap and (heap[0] >> _SLOT_BITS) <= limit:
            packed = heapq.heappop(heap)
            slot = packed & mask
            if valid[slot] == packed >> _SLOT_BITS:
                valid[slot] = _NONE
                out.append(slot)
        if len(heap) > 64 and len(heap) > 4 * len(valid):
            self._compact()
        return out

    def _compact(self) -> None:
        """Drop the superseded entries (heartbeats moved deadlines earlier many times)."""
        valid = self._valid
        mask = (1 << _SLOT_BITS) - 1
        self._heap = [p for p in self._heap if valid[p & mask] == p >> _SLOT_BITS]
        heapq.heapify(self._heap)
