"""``/health`` (the process is up) and ``/ready`` (the database answers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from omninode_bridge.api import examples
from omninode_bridge.api.problems import RETRY_AFTER_SECONDS
from omninode_bridge.api.routes.common import State
from omninode_bridge.api.schemas import Status

router = APIRouter(tags=["health"])


@router.get("/health", responses=examples.answer(examples.STATUS_OK))
async def health() -> Status:
    """Liveness of the process; never touches the database."""
    return Status(status="ok")


@router.get(
    "/ready",
    responses={
        **examples.answer(examples.READY),
        503: {"model": Status, "description": "Not ready"},
    },
)
async def ready(state: State, response: Response) -> Status:
    """Readiness: the database answers and the change feed is followed.

    503 with ``Retry-After`` otherwise. The answer names no host, socket path
    or server version (it is open to anyone); the server log has the details.
    ``discovery_index`` says how discovery answers meanwhile: ``current``,
    ``stale`` (served from the last known state, ``discovery_index_stale_seconds``
    old, until the grace ends), ``unavailable`` (stale past the grace: discovery
    calls fail) or ``not loaded`` (no discovery request yet).
    """
    report = await state.client.health_check()
    database_ok = report["status"] == "healthy"
    following = state.hub.following
    index_state, stale_seconds = _index_state(state.discovery.status())
    detail = {
        "database": "ok" if database_ok else "unavailable",
        "latency_ms": report["latency_ms"],
        "change_feed": "following" if following else "not following",
        "discovery_index": index_state,
        "discovery_index_stale_seconds": stale_seconds,
    }
    if not (database_ok and following):
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return Status(status="unavailable", detail=detail)
    return Status(status="ready", detail=detail)


def _index_state(status: dict[str, Any]) -> tuple[str, float | None]:
    if not status["started"]:
        return "not loaded", None
    stale = status["stale_seconds"]
    if stale is None:
        return "current", None
    return ("unavailable" if stale > status["grace_seconds"] else "stale"), round(stale, 3)
