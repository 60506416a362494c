"""IdSet: a set of strings at about 9 bytes per member, for indexes of a million tools.

A ``set`` costs 30-60 bytes per member (hash and pointer, a table kept under
60% full); this keeps members in one sorted list (a pointer each) plus small
sets of the additions and removals since it was last merged. It merges when
those exceed an eighth of the list, so each change costs O(1) amortized
besides a binary search, and iterating costs one pass over the list.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator

__all__ = ["IdSet"]

MIN_PENDING = 64  # changes kept apart before a merge, however small the list


class IdSet:
    """A set of strings, compact; iterates in no particular order."""

    __slots__ = ("_added", "_removed", "_sorted")

    def __init__(self, members: Iterable[str] = ()) -> None:
        self._sorted = sorted(set(members))
        self._added: set[str] = set()
        self._removed: set[str] = set()

    @classmethod
    def of_distinct(cls, members: list[str]) -> IdSet:
        """The set of ``members``, which must hold no repeats; takes the list over."""
        members.sort()
        ids = cls()
        ids._sorted = members
        return ids

    def _in_sorted(self, item: str) -> bool:
        at = bisect_left(self._sorted, item)
        return at < len(self._sorted) and self._sorted[at] == item

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, str) or item in self._removed:
            return False
        return item in self._added or self._in_sorted(item)

    def __len__(self) -> int:
        return len(self._sorted) - len(self._removed) + len(self._added)

    def __iter__(self) -> Iterator[str]:
        removed = self._removed
        if removed:
            yield from (t for t in self._sorted if t not in removed)
        else:
            yield from self._sorted
        yield from self._added

    def add(self, item: str) -> None:
        if item in self._removed:
            self._removed.discard(item)  # it is in the list still
        elif not self._in_sorted(item):
            self._added.add(item)
            self._merge_if_due()

    def discard(self, item: str) -> None:
        if item in self._added:
            self._added.discard(item)
        elif self._in_sorted(item):
            self._removed.add(item)
            self._merge_if_due()

    def _merge_if_due(self) -> None:
        if len(self._added) + len(self._removed) > max(MIN_PENDING, len(self._sorted) >> 3):
            self._sorted = sorted(self)
            self._added = set()
            self._removed = set()
