"""The small interface between a discovery engine (etcd now, Consul later) and the bridge.

A source watches a set of announcements, one per tool, each with a raw value
(a JSON registration). It offers two things:

* :meth:`DiscoverySource.snapshot`: every announcement present now, with the
  source's revision at that moment;
* :meth:`DiscoverySource.watch`: the changes from a revision on, in order,
  each carrying the revision it happened at.

Revisions are the source's own position counter (etcd's store revision, or a
Consul index); the bridge only compares and replays them. A source knows
nothing about the registry; :mod:`omninode_bridge.autodiscovery.bridge`
applies what it reports.

Failures are typed: :class:`SourceUnavailableError` means "try again later,
conclude nothing" (the bridge keeps every registration as it is), and
:class:`SourceHistoryLostError` means "the changes since that revision are no
longer kept" (the bridge lists everything again and reconciles).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

# The errors live in the one tree (omninode_bridge.errors); re-exported here for sources.
from omninode_bridge.errors import SourceError, SourceHistoryLostError, SourceUnavailableError

__all__ = [
    "DiscoverySource",
    "SourceEntry",
    "SourceError",
    "SourceEvent",
    "SourceEventKind",
    "SourceHistoryLostError",
    "SourceSnapshot",
    "SourceUnavailableError",
]


class SourceEventKind(StrEnum):
    """What happened to an announcement."""

    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class SourceEntry:
    """One announcement as listed: ``key`` names it in logs, ``tool_id`` is derived from it."""

    key: str
    tool_id: str
    value: bytes


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """One change, at ``revision``.

    A PUT carries the new ``value``; a DELETE carries a human ``reason`` such
    as ``"etcd key deleted"`` or ``"etcd lease expired"`` (it goes to the
    registry's change feed).
    """

    kind: SourceEventKind
    key: str
    tool_id: str
    revision: int
    value: bytes | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SourceSnapshot:
    """Every announcement present at ``revision``; changes after it start at ``revision + 1``."""

    entries: list[SourceEntry]
    revision: int


class DiscoverySource(Protocol):
    """What the bridge needs from a discovery engine.

    ``name`` identifies the source and its scope (``etcd:/omninode/tools/``);
    the bridge records ``source:<name>`` as the owner of every registration it
    makes, so two sources never touch each other's tools.
    """

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str:
        """Where the source reads from, for messages (never credentials)."""
        ...

    async def snapshot(self) -> SourceSnapshot:
        """Every announcement present now (a consistent view at one revision).

        Raises SourceUnavailableError, or SourceHistoryLostError when the view
        moved past what the source keeps while it was being read.
        """
        ...

    def watch(self, start_revision: int) -> AbstractAsyncContextManager[AsyncIterator[SourceEvent]]:
        """Changes from ``start_revision`` (inclusive) on, in revision order.

        Entering the context establishes the watch (so a caller knows the
        source is reachable); iterating yields events until the source fails.
        Both raise SourceUnavailableError, or SourceHistoryLostError when
        ``start_revision`` is older than the history the source keeps. The
        iterator never ends on its own while the source is healthy.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; the source may be used again afterwards (it reconnects)."""
        ...
