"""``POST /v1/tools/search``: capability containment, node type, freshness and SQL/JSON path."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response

from omninode_bridge.api import examples
from omninode_bridge.api.auth import Reader
from omninode_bridge.api.routes.common import State, json_response, problems
from omninode_bridge.api.schemas import SearchRequest
from omninode_bridge.models import ModelToolRegistrationPage

router = APIRouter(prefix="/v1", tags=["tools"])


@router.post(
    "/tools/search",
    response_model=ModelToolRegistrationPage,  # documents the JSON PostgreSQL builds
    responses={**examples.answer(examples.PAGE), **problems(400, 401, 413, 422)},
)
async def search_tools(
    body: Annotated[
        SearchRequest,
        Body(openapi_examples=examples.body("Fresh stampers for big files", examples.SEARCH)),
    ],
    state: State,
    _: Reader,
) -> Response:
    """A page of tools matching every filter given, ordered by tool_id."""
    page = await state.repository.find_tools_json(
        capabilities=body.capabilities,
        node_type=body.node_type,
        max_age_seconds=body.healthy_within_seconds,
        where=body.where,
        limit=body.limit,
        cursor=body.cursor,
    )
    return json_response(page)
