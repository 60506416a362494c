"""The database clock as seen from this process.

Heartbeats are stamped by the database clock, so freshness must be judged by
it too, not by this host's wall clock. Each sample pairs a database timestamp
with this process's monotonic clock read *before* the query was sent; since
the database read its clock after that instant, ``local + offset`` is an upper
bound on the database time. Erring late makes a tool expire early, never late:
a stale tool is never taken for a live one.
"""

from __future__ import annotations

import time

__all__ = ["DbClock"]


class DbClock:
    """Database time (epoch seconds) estimated from the local monotonic clock."""

    __slots__ = ("_offset",)

    def __init__(self) -> None:
        # Until the first sample, assume the database shares this host's clock.
        self._offset = time.time() - time.monotonic()

    def sample(self, db_now: float, local_before: float) -> None:
        """Record that the database read ``db_now`` at some instant after ``local_before``.

        ``local_before`` is :func:`time.monotonic` taken before the query was sent.
        """
        self._offset = db_now - local_before

    def now(self) -> float:
        """The database's time now, in epoch seconds (never earlier than the truth)."""
        return time.monotonic() + self._offset

    @staticmethod
    def local() -> float:
        """This process's monotonic clock (ejection deadlines, staleness of the index)."""
        return time.monotonic()
