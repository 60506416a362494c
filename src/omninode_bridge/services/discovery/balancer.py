"""Load balancing: power of two choices on requests in flight.

Two distinct candidates are drawn at random and the one with fewer requests
in flight wins; on a tie the first drawn wins, which is itself random. Choosing
costs O(1) whatever the number of candidates, spreads sequential callers
evenly in expectation, and steers concurrent ones away from slow tools. No
history is kept, so a tool that joins (or returns from an ejection) gets its
share at once, not a burst to "catch up".
"""

from __future__ import annotations

import random
from collections.abc import Container, Sequence

__all__ = ["PowerOfTwoBalancer"]

_SAMPLES_BEFORE_SCAN = 8


class PowerOfTwoBalancer:
    """Chooses among candidate tool ids and tracks the requests in flight to each."""

    def __init__(self, rng: random.Random | None = None) -> None:
        # Spreading load, not cryptography.
        self._random = (rng if rng is not None else random.Random()).random  # noqa: S311
        self._in_flight: dict[str, int] = {}

    def choose(self, ids: Sequence[str], avoid: Container[str] = ()) -> str | None:
        """The chosen id; ``None`` when every id is in ``avoid``.

        ``ids`` must not repeat an id. ``avoid`` holds the tools already tried by
        the same request; when it rules out most of ``ids``, the choice falls
        back to a scan.
        """
        n = len(ids)
        if n == 0:
            return None
        if n == 1:
            only = ids[0]
            return None if only in avoid else only
        rand, load = self._random, self._in_flight
        for _ in range(_SAMPLES_BEFORE_SCAN):
            i = int(rand() * n)
            j = int(rand() * (n - 1))
            if j >= i:
                j += 1
            a, b = ids[i], ids[j]
            a_ok, b_ok = a not in avoid, b not in avoid
            if a_ok and b_ok:
                return a if load.get(a, 0) <= load.get(b, 0) else b
            if a_ok or b_ok:
                return a if a_ok else b
        rest = [tool_id for tool_id in ids if tool_id not in avoid]
        if not rest:
            return None
        return min(rest, key=self.in_flight)

    def in_flight(self, tool_id: str) -> int:
        """Requests to ``tool_id`` that have begun and not ended."""
        return self._in_flight.get(tool_id, 0)

    def begin(self, tool_id: str) -> None:
        """A request to ``tool_id`` starts."""
        self._in_flight[tool_id] = self._in_flight.get(tool_id, 0) + 1

    def end(self, tool_id: str) -> None:
        """A request to ``tool_id`` ended (whatever its outcome)."""
        count = self._in_flight.get(tool_id, 0) - 1
        if count > 0:
            self._in_flight[tool_id] = count
        else:
            self._in_flight.pop(tool_id, None)

    def forget(self, tool_id: str) -> None:
        """Nothing to drop: a tool's counter exists only while requests are in flight."""
