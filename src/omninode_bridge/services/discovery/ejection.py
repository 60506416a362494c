"""Passive failure detection: how long a tool that could not be reached sits out.

Each consecutive failure to connect doubles the ejection, from
``eject_base_seconds`` up to ``eject_max_seconds``; one success forgets the
failures. The ejection itself (who is out, until when) is kept by the index.
"""

from __future__ import annotations

__all__ = ["EjectionPolicy"]


class EjectionPolicy:
    """Counts consecutive connect failures per tool and turns them into backoffs."""

    def __init__(self, base_seconds: float, max_seconds: float) -> None:
        if base_seconds <= 0 or max_seconds < base_seconds:
            raise ValueError("need 0 < base_seconds <= max_seconds")
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self._failures: dict[str, int] = {}

    def failed(self, tool_id: str) -> float:
        """Record a failure to connect; returns how many seconds the tool sits out."""
        count = self._failures.get(tool_id, 0) + 1
        self._failures[tool_id] = count
        # 2**count overflows floats long after the cap is reached; stop doubling there.
        exponent = min(count - 1, 62)
        return min(self.max_seconds, self.base_seconds * float(2**exponent))

    def succeeded(self, tool_id: str) -> bool:
        """Forget the failures of ``tool_id``; ``True`` when it had any."""
        return self._failures.pop(tool_id, None) is not None

    def failures(self, tool_id: str) -> int:
        """Consecutive failures to connect recorded for ``tool_id``."""
        return self._failures.get(tool_id, 0)

    def forget(self, tool_id: str) -> None:
        """Drop the record of a tool that left the registry."""
        self._failures.pop(tool_id, None)
