"""``/health`` (the process is up) and ``/ready`` (the database answers)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from omninode_bridge.api.problems import RETRY_AFTER_SECONDS
from omninode_bridge.api.routes.common import State
from omninode_bridge.api.schemas import Status

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> Status:
    """Liveness of the process; never touches the database."""
    return Status(status="ok")


@router.get("/ready", responses={503: {"model": Status, "description": "Database unreachable"}})
async def ready(state: State, response: Response) -> Status:
    """Readiness: the database answers (503 with ``Retry-After`` when it does not)."""
    report = await state.client.health_check()
    if report["status"] != "healthy":
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return Status(status="unavailable", detail=report)
    return Status(status="ready", detail=report)
