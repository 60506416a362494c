"""``GET /v1/discover/{operation}``: the tool that discovery would route the operation to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from omninode_bridge.api.auth import Reader
from omninode_bridge.api.routes.common import State, problems
from omninode_bridge.models import ModelToolRegistration

router = APIRouter(prefix="/v1", tags=["discovery"])

OperationPath = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")
]


@router.get("/discover/{operation}", responses=problems(401, 404, 422))
async def discover(operation: OperationPath, state: State, _: Reader) -> ModelToolRegistration:
    """A routable tool for ``operation``: it lists the operation, has an endpoint for it,
    heartbeats within the TTL, and is neither critical nor ejected. Successive calls
    spread over the routable tools. 404 when there is none, saying how many tools declare
    the operation and why the first few are not routable (``tools[].reason``).
    """
    tool = await state.discovery.discover_tool(operation)
    if tool is None:
        raise await state.discovery.no_routable_tool(operation)
    return tool
