"""``GET /v1/tools/{tool_id}/history``: a tool's health over a window, from the change feed.

The feed is the history (:class:`~omninode_bridge.liveness.history.HealthHistory`):
``created``/``updated``/``deleted``, heartbeat freshness (``stale``/``healthy``)
and active checks (``critical``/``passing``). This folds those events into two
lanes of bands, each band a state held from ``start`` to ``end``:

- ``heartbeat``: ``fresh``, ``stale``, ``absent`` (not registered) or ``unknown``
  (no event before it is kept);
- ``checks``: ``passing``, ``critical``, ``unknown`` (not decided yet) or ``absent``;

and lists each change of a lane's state as a transition. The web console draws
the bands; any client can.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from omninode_bridge.api import examples
from omninode_bridge.api.auth import Reader
from omninode_bridge.api.routes.common import State, problems
from omninode_bridge.api.routes.tools import ToolIdPath
from omninode_bridge.errors import ToolNotFoundError
from omninode_bridge.liveness.history import MAX_HISTORY, HealthHistory
from omninode_bridge.models import ChangeEvent, ChangeKind
from omninode_bridge.models.timestamps import UtcTimestamp

__all__ = ["Band", "ToolTimeline", "Transition", "router", "timeline"]

router = APIRouter(prefix="/v1", tags=["tools"])

Lane = Literal["heartbeat", "checks"]
LANES: tuple[Lane, ...] = ("heartbeat", "checks")
RECENT_EVENTS = 50

# Each event kind's effect on a lane's state (absent: no effect).
_HEARTBEAT = {
    ChangeKind.CREATED: "fresh",  # registration counts as a first heartbeat
    ChangeKind.HEALTHY: "fresh",
    ChangeKind.STALE: "stale",
    ChangeKind.DELETED: "absent",
}
_CHECKS = {
    ChangeKind.CREATED: "unknown",
    ChangeKind.CRITICAL: "critical",
    ChangeKind.PASSING: "passing",
    ChangeKind.DELETED: "absent",
}


_LANE = "heartbeat: freshness of the heartbeats; checks: the active health checks."
_STATE = (
    "heartbeat: fresh, stale, absent (not registered) or unknown (nothing kept before); "
    "checks: passing, critical, unknown (not decided yet) or absent."
)


class Band(BaseModel):
    """One lane's state from ``start`` to ``end``."""

    lane: Lane = Field(description=_LANE)
    state: str = Field(description=_STATE)
    start: UtcTimestamp = Field(description="UTC.")
    end: UtcTimestamp = Field(description="UTC.")


class Transition(BaseModel):
    """A lane's state changed at ``at`` (the event that changed it: ``kind``, ``reason``)."""

    at: UtcTimestamp = Field(description="When the event happened (UTC).")
    lane: Lane = Field(description=_LANE)
    previous: str = Field(description="The state before: " + _STATE)
    state: str = Field(description="The state after.")
    kind: ChangeKind = Field(description="The change-feed event that changed it.")
    reason: str | None = Field(default=None, description="The event's reason, if it gave one.")


class ToolTimeline(BaseModel):
    """A tool's health lanes over ``[start, end]`` and its newest feed events."""

    tool_id: str = Field(description="The tool's id.")
    start: UtcTimestamp = Field(description="The window's start (UTC): `hours` before `end`.")
    end: UtcTimestamp = Field(description="The window's end: now (UTC).")
    bands: list[Band] = Field(description="Each lane's states covering the window, in order.")
    transitions: list[Transition] = Field(description="Oldest first.")
    events: list[ChangeEvent] = Field(
        description=f"The newest {RECENT_EVENTS} events of the tool kept in the feed, newest first."
    )


def _next_state(lane: Lane, state: str, event: ChangeEvent) -> str:
    if lane == "heartbeat":
        if event.kind is ChangeKind.UPDATED and state == "absent":
            return "fresh"
        return _HEARTBEAT.get(event.kind, state)
    if event.kind is ChangeKind.CREATED and state not in ("absent", "unknown"):
        return state  # re-registration (PUT) keeps the checks' verdict
    return _CHECKS.get(event.kind, state)


def timeline(
    tool_id: str, events: Sequence[ChangeEvent], start: datetime, end: datetime
) -> ToolTimeline:
    """Fold ``events`` (oldest first, by when they happened) into bands over ``[start, end]``."""
    states: dict[Lane, str] = {"heartbeat": "unknown", "checks": "unknown"}
    opened: dict[Lane, datetime] = {"heartbeat": start, "checks": start}
    bands: list[Band] = []
    transitions: list[Transition] = []
    for event in events:
        at = min(max(event.occurred_at, start), end)
        for lane in LANES:
            after = _next_state(lane, states[lane], event)
            if after == states[lane]:
                continue
            if event.occurred_at >= start:
                if at > opened[lane]:
                    bands.append(Band(lane=lane, state=states[lane], start=opened[lane], end=at))
                transitions.append(
                    Transition(
                        at=event.occurred_at,
                        lane=lane,
                        previous=states[lane],
                        state=after,
                        kind=event.kind,
                        reason=event.reason,
                    )
                )
                opened[lane] = at
            states[lane] = after
    for lane in LANES:
        if end > opened[lane]:
            bands.append(Band(lane=lane, state=states[lane], start=opened[lane], end=end))
    recent = list(reversed(events[-RECENT_EVENTS:]))
    return ToolTimeline(
        tool_id=tool_id, start=start, end=end, bands=bands, transitions=transitions, events=recent
    )


@router.get(
    "/tools/{tool_id}/history",
    responses={**examples.answer(examples.TIMELINE), **problems(401, 404, 422)},
)
async def tool_history(
    tool_id: ToolIdPath,
    state: State,
    _: Reader,
    hours: Annotated[float, Query(gt=0, le=24 * 31, description="The window, ending now.")] = 24,
) -> ToolTimeline:
    """The tool's heartbeat freshness and check results over the last ``hours`` as bands,
    their transitions, and its newest change-feed events (what ``toolreg tools history``
    shows). Kept for ``TOOLREG_EVENT_RETENTION_SECONDS``, also after the tool is deleted;
    404 when the feed keeps nothing of it and it is not registered."""
    events = await HealthHistory(state.client, state.settings.ttl_seconds).history(
        tool_id, MAX_HISTORY
    )
    if not events and await state.repository.get_registration(tool_id) is None:
        raise ToolNotFoundError(tool_id)
    end = datetime.now(UTC)
    return timeline(tool_id, events, end - timedelta(hours=hours), end)
