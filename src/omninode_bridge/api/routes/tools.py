"""``/v1/tools``: register, read, update, replace, delete and heartbeat tools."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials

from omninode_bridge.api.auth import (
    Reader,
    Writer,
    bearer_scheme,
    check_owner,
    check_owners,
    principal_of,
    require_writer,
)
from omninode_bridge.api.routes.common import State, problems
from omninode_bridge.api.schemas import HeartbeatBatch, HeartbeatBatchResult
from omninode_bridge.errors import ToolNotFoundError, ValidationFailedError
from omninode_bridge.models import (
    ModelToolRegistration,
    ModelToolRegistrationCreate,
    ModelToolRegistrationPage,
    ModelToolRegistrationUpdate,
    NodeType,
)
from omninode_bridge.models.fields import TOOL_ID_PATTERN
from omninode_bridge.models.query import MAX_PAGE_SIZE
from omninode_bridge.services.tokens import Scope

router = APIRouter(prefix="/v1", tags=["tools"])

ToolIdPath = Annotated[str, Path(min_length=1, max_length=255, pattern=TOOL_ID_PATTERN)]


@router.post(
    "/tools",
    status_code=status.HTTP_201_CREATED,
    responses=problems(400, 401, 403, 409, 413, 422),
)
async def create_tool(
    body: ModelToolRegistrationCreate, principal: Writer, state: State, response: Response
) -> ModelToolRegistration:
    """Register a new tool, owned by the calling token. Registration is its first heartbeat."""
    created = await state.repository.create_registration(body, owner=principal.owner)
    response.headers["Location"] = f"/v1/tools/{created.tool_id}"
    return created


@router.get("/tools", responses=problems(401, 422))
async def list_tools(
    state: State,
    _: Reader,
    node_type: NodeType | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> ModelToolRegistrationPage:
    """A page of tools by tool_id; follow ``next_cursor`` to walk them all exactly once."""
    return await state.repository.find_tools(node_type=node_type, limit=limit, cursor=cursor)


@router.get("/tools/{tool_id}", responses=problems(401, 404, 422))
async def get_tool(tool_id: ToolIdPath, state: State, _: Reader) -> ModelToolRegistration:
    """One tool's registration."""
    found = await state.repository.get_registration(tool_id)
    if found is None:
        raise ToolNotFoundError(tool_id)
    return found


async def _authorize(state: State, principal: Writer, tool_id: str) -> None:
    owner = await state.repository.get_owner(tool_id)
    if owner is None and await state.repository.get_registration(tool_id) is None:
        raise ToolNotFoundError(tool_id)
    check_owner(principal, tool_id, owner)


@router.patch("/tools/{tool_id}", responses=problems(400, 401, 403, 404, 413, 422))
async def update_tool(
    tool_id: ToolIdPath, body: ModelToolRegistrationUpdate, principal: Writer, state: State
) -> ModelToolRegistration:
    """Change the fields given; JSONB fields are replaced whole."""
    await _authorize(state, principal, tool_id)
    updated = await state.repository.update_registration(tool_id, body)
    if updated is None:
        raise ToolNotFoundError(tool_id)
    return updated


@router.put(
    "/tools/{tool_id}",
    responses={
        201: {"model": ModelToolRegistration, "description": "Created"},
        **problems(400, 401, 403, 413, 422),
    },
)
async def put_tool(
    tool_id: ToolIdPath,
    body: ModelToolRegistrationCreate,
    principal: Writer,
    state: State,
    response: Response,
) -> ModelToolRegistration:
    """Idempotent registration (a restarting tool): 201 when created, 200 when replaced."""
    if body.tool_id != tool_id:
        raise ValidationFailedError([("tool_id", f"must equal the path's tool_id {tool_id!r}")])
    owner = await state.repository.get_owner(tool_id)
    if owner is not None or await state.repository.get_registration(tool_id) is not None:
        check_owner(principal, tool_id, owner)
    registration, created = await state.repository.upsert_registration(body, owner=principal.owner)
    if created:
        response.status_code = status.HTTP_201_CREATED
        response.headers["Location"] = f"/v1/tools/{tool_id}"
    state.metrics.heartbeats.inc()
    return registration


@router.delete(
    "/tools/{tool_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 422),
)
async def delete_tool(tool_id: ToolIdPath, principal: Writer, state: State) -> Response:
    """Deregister a tool."""
    await _authorize(state, principal, tool_id)
    if not await state.repository.delete_registration(
        tool_id, reason=f"deleted by {principal.name}"
    ):
        raise ToolNotFoundError(tool_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/tools/{tool_id}/heartbeat",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 422),
)
async def heartbeat(
    tool_id: ToolIdPath,
    request: Request,
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Response:
    """Record a heartbeat now (database clock)."""
    if credentials is not None and await state.tokens.heartbeat(credentials.credentials, tool_id):
        state.metrics.heartbeats.inc()
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    # The slow path, for the right error (or a race with a concurrent change of owner).
    principal = await require_writer(await principal_of(request, state, credentials))
    repo = state.repository
    if principal.scope is Scope.ADMIN:
        updated = await repo.update_heartbeat(tool_id)
    elif not (updated := await repo.update_heartbeat_owned(tool_id, principal.owner)):
        await _authorize(state, principal, tool_id)  # raises 404 or 403
        updated = await repo.update_heartbeat_owned(tool_id, principal.owner)
    if not updated:
        raise ToolNotFoundError(tool_id)
    state.metrics.heartbeats.inc()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/heartbeats", responses=problems(400, 401, 403, 413, 422))
async def heartbeats(body: HeartbeatBatch, principal: Writer, state: State) -> HeartbeatBatchResult:
    """Heartbeat many tools at once; ids that are not registered come back in ``unknown``."""
    ids = list(dict.fromkeys(body.tool_ids))
    owners = await state.repository.get_owners(ids)
    if any(owners.get(i) != principal.owner for i in ids):
        present = await state.repository.existing_tool_ids(ids)
        check_owners(principal, owners, [i for i in ids if i in present])
    unknown = await state.repository.update_heartbeats(ids)
    state.metrics.heartbeats.inc(len(ids) - len(unknown))
    return HeartbeatBatchResult(updated=len(ids) - len(unknown), unknown=unknown)
