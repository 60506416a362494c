"""``GET /v1/discover/{operation}``: the tool that discovery would route the operation to."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from omninode_bridge.api import examples
from omninode_bridge.api.auth import Reader
from omninode_bridge.api.routes.common import State, problems
from omninode_bridge.models import ModelToolRegistration
from omninode_bridge.models.timestamps import UtcTimestamp

router = APIRouter(prefix="/v1", tags=["discovery"])

OperationPath = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")
]


@router.get(
    "/discover/{operation}",
    responses={**examples.answer(examples.REGISTRATION), **problems(401, 404, 422)},
)
async def discover(operation: OperationPath, state: State, _: Reader) -> ModelToolRegistration:
    """A routable tool for ``operation``: it lists the operation, has an endpoint for it,
    heartbeats within the TTL, and is neither critical nor ejected. Successive calls
    spread over the routable tools. When none is routable, an ejected tool that would
    otherwise be (the one due back first) is answered as a probe, else a fresh tool that
    lists the operation without an endpoint for it. 404 when there is neither, saying how
    many tools declare the operation and why the first few are not routable
    (``tools[].reason``).
    """
    tool = await state.discovery.discover_tool(operation)
    if tool is None:
        raise await state.discovery.no_routable_tool(operation)
    return tool


class Verdict(BaseModel):
    """One declaring tool: routable, or the first reason it is not."""

    tool_id: str = Field(description="The declaring tool.")
    reason: Literal["routable", "no_endpoint", "stale", "critical", "excluded", "ejected"] = Field(
        description="routable, or why not: no endpoint for the operation, heartbeat older "
        "than the TTL, failing active checks, excluded, or ejected after failed calls."
    )
    detail: str = Field(description="The reason in words.")
    since: UtcTimestamp | None = Field(
        default=None, description="stale / critical: since when (UTC); left out otherwise."
    )
    until: UtcTimestamp | None = Field(
        default=None, description="ejected: until when (UTC); left out otherwise."
    )


class Explanation(BaseModel):
    """How many tools declare the operation, how many are routable, and each one's verdict
    (the unroutable first): the members of the 404 of ``GET /v1/discover/{operation}``."""

    operation: str = Field(description="The operation asked about.")
    declared: int = Field(description="Tools that declare it.")
    routable: int = Field(description="Of those, the routable ones.")
    summary: str = Field(description="The counts and reasons in one sentence.")
    tools: list[Verdict] = Field(description="At most `limit` verdicts, the unroutable first.")


@router.get(
    "/discover/{operation}/explain",
    responses={**examples.answer(examples.EXPLANATION), **problems(401, 422)},
    response_model_exclude_none=True,  # like the 404's members: absent times left out
)
async def explain(
    operation: OperationPath,
    state: State,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=1000, description="Tools listed at most.")] = 100,
) -> Explanation:
    """Why each tool declaring ``operation`` is or is not routable now (no endpoint,
    heartbeat older than the TTL, critical since, excluded, ejected until): the
    explanation discovery gives when nothing is routable, asked for at any time."""
    return Explanation.model_validate((await state.discovery.explain(operation, limit)).as_dict())
