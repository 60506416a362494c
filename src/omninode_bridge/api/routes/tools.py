"""``/v1/tools``: register, read, update, replace, delete and heartbeat tools."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials

from omninode_bridge.api import examples
from omninode_bridge.api.auth import (
    PRINCIPAL_KEY,
    Reader,
    Writer,
    bearer_scheme,
    check_owner,
    check_owners,
    principal_of,
    require_writer,
)
from omninode_bridge.api.routes.common import State, json_response, problems
from omninode_bridge.api.routes.fast_heartbeat import TRIED
from omninode_bridge.api.schemas import HeartbeatBatch, HeartbeatBatchResult
from omninode_bridge.errors import (
    PermissionDeniedError,
    ToolNotFoundError,
    ValidationFailedError,
)
from omninode_bridge.models import (
    ModelToolRegistration,
    ModelToolRegistrationCreate,
    ModelToolRegistrationPage,
    ModelToolRegistrationUpdate,
    NodeType,
)
from omninode_bridge.models.fields import TOOL_ID_PATTERN
from omninode_bridge.models.query import MAX_PAGE_SIZE
from omninode_bridge.models.status import ModelToolRegistrationWithHealth
from omninode_bridge.services.tokens import Scope

router = APIRouter(prefix="/v1", tags=["tools"])

# An owner-checked write that changed nothing is diagnosed and, when the caller
# turns out to own the tool after all (it raced itself), tried again.
WRITE_ATTEMPTS = 3

ToolIdPath = Annotated[str, Path(min_length=1, max_length=255, pattern=TOOL_ID_PATTERN)]
NewRegistration = Annotated[
    ModelToolRegistrationCreate,
    Body(openapi_examples=examples.body("A tool serving stamp", examples.REGISTRATION_CREATE)),
]


@router.post(
    "/tools",
    status_code=status.HTTP_201_CREATED,
    responses={
        **examples.answer(examples.REGISTRATION, 201),
        **problems(400, 401, 403, 409, 413, 422),
    },
)
async def create_tool(
    body: NewRegistration, principal: Writer, state: State, response: Response
) -> ModelToolRegistration:
    """Register a new tool, owned by the calling token. Registration is its first heartbeat."""
    created = await state.repository.create_registration(body, owner=principal.owner)
    response.headers["Location"] = f"/v1/tools/{created.tool_id}"
    return created


# The read routes answer with the JSON PostgreSQL built (the repository's *_json
# methods): their response_model documents it and is not applied.


@router.get(
    "/tools",
    response_model=ModelToolRegistrationPage,
    responses={**examples.answer(examples.PAGE), **problems(401, 422)},
)
async def list_tools(
    state: State,
    _: Reader,
    node_type: NodeType | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> Response:
    """A page of tools by tool_id; follow ``next_cursor`` to walk them all exactly once."""
    page = await state.repository.find_tools_json(node_type=node_type, limit=limit, cursor=cursor)
    return json_response(page)


@router.get(
    "/tools/{tool_id}",
    response_model=ModelToolRegistrationWithHealth,
    responses={**examples.answer(examples.REGISTRATION_WITH_HEALTH), **problems(401, 404, 422)},
)
async def get_tool(tool_id: ToolIdPath, state: State, _: Reader) -> Response:
    """One tool's registration, with its health now: heartbeat freshness (TTL, database
    clock) and the active checks' verdict (passing / critical since when)."""
    repository, ttl = state.repository, state.settings.ttl_seconds
    found = await repository.get_registration_with_health_json(tool_id, ttl)
    if found is None:
        raise ToolNotFoundError(tool_id)
    return json_response(found)


async def _why_not(state: State, principal: Writer, tool_id: str, *, creates: bool = False) -> None:
    """After an owner-checked write changed nothing: raise 404 or 403, or return if it may retry.

    Returns when ``principal`` now owns the tool (it raced itself, e.g. two
    requests of one token creating the same id), or, for a write that
    ``creates`` an absent tool (PUT), when the tool is gone (deleted meanwhile):
    the caller retries the write, which is owner-checked again.
    """
    registered, owner = await state.repository.get_registration_owner(tool_id)
    if not registered:
        if creates:
            return
        raise ToolNotFoundError(tool_id)
    check_owner(principal, tool_id, owner)


def _owner_filter(principal: Writer) -> str | None:
    """The owner a write must match (``None``: admin, who may change any tool)."""
    return None if principal.scope is Scope.ADMIN else principal.owner


ForceQuery = Annotated[
    bool,
    Query(
        description="Admin only: write over a tool that an auto-discovery source owns, "
        "taking it over (the source leaves it alone from then on)."
    ),
]


def _source_rules(principal: Writer, force: bool) -> tuple[str | None, bool]:
    """``(writer, take_over)``: an admin's writes spare a source's tools unless forced.

    Other tokens never reach a tool they do not own (the owner check refuses first).
    """
    if principal.scope is not Scope.ADMIN:
        return None, False
    return principal.owner, force


@router.patch(
    "/tools/{tool_id}",
    responses={
        **examples.answer(examples.REGISTRATION_UPDATED),
        **problems(400, 401, 403, 404, 409, 413, 422),
    },
)
async def update_tool(
    tool_id: ToolIdPath,
    body: Annotated[
        ModelToolRegistrationUpdate,
        Body(openapi_examples=examples.body("A new version", examples.REGISTRATION_UPDATE)),
    ],
    principal: Writer,
    state: State,
    force: ForceQuery = False,
) -> ModelToolRegistration:
    """Change the fields given; JSONB fields are replaced whole.

    409 when an auto-discovery source owns the tool (its next change would undo
    this one): change it at the source, or, as an admin, take it over with
    ``?force=true``.
    """
    writer, take_over = _source_rules(principal, force)
    for _ in range(WRITE_ATTEMPTS):
        updated = await state.repository.update_registration(
            tool_id, body, owner=_owner_filter(principal), writer=writer, take_over=take_over
        )
        if updated is not None:
            return updated
        await _why_not(state, principal, tool_id)
    raise ToolNotFoundError(tool_id)


@router.put(
    "/tools/{tool_id}",
    responses={
        **examples.answer(examples.REGISTRATION),
        201: {
            "model": ModelToolRegistration,
            "description": "Created",
            **examples.content(examples.REGISTRATION),
        },
        **problems(400, 401, 403, 409, 413, 422),
    },
)
async def put_tool(
    tool_id: ToolIdPath,
    body: NewRegistration,
    principal: Writer,
    state: State,
    response: Response,
    force: ForceQuery = False,
) -> ModelToolRegistration:
    """Idempotent registration (a restarting tool): 201 when created, 200 when replaced.

    409 when an auto-discovery source owns the tool (see PATCH; ``?force=true``).
    """
    if body.tool_id != tool_id:
        raise ValidationFailedError([("tool_id", f"must equal the path's tool_id {tool_id!r}")])
    owned_only = principal.scope is not Scope.ADMIN
    writer, take_over = _source_rules(principal, force)
    for attempt in range(WRITE_ATTEMPTS):
        try:
            registration, created = await state.repository.upsert_registration(
                body,
                owner=principal.owner,
                owned_only=owned_only,
                protect_sources=writer is not None,
                take_over=take_over,
            )
            break
        except PermissionDeniedError:
            if attempt == WRITE_ATTEMPTS - 1:
                raise
            # 403, or it raced itself or a delete: again
            await _why_not(state, principal, tool_id, creates=True)
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
    for _ in range(WRITE_ATTEMPTS):
        if await state.repository.delete_registration(
            tool_id, reason=f"deleted by {principal.name}", owner=_owner_filter(principal)
        ):
            return Response(status_code=status.HTTP_204_NO_CONTENT)
        await _why_not(state, principal, tool_id)
    raise ToolNotFoundError(tool_id)


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
    """Record a heartbeat now (database clock); 204 once it is committed.

    Concurrent heartbeats are written together in one statement (see
    TOOLREG_HEARTBEAT_BATCH_WINDOW_MS), each judged on its own token and tool.
    """
    # FastHeartbeatRoute tries the common case first; what it hands on comes here.
    if credentials is not None and not request.scope.get("state", {}).get(TRIED):
        secret, coalescer = credentials.credentials, state.heartbeats
        if coalescer is not None:
            written = await coalescer.submit((secret, tool_id))
        else:
            written = await state.tokens.heartbeat(secret, tool_id)
        if written is not None:
            request.scope[PRINCIPAL_KEY] = written  # the access log names its token
            state.metrics.heartbeats.inc()
            return Response(status_code=status.HTTP_204_NO_CONTENT)
    # The slow path, for the right error (or a race with a concurrent change of owner),
    # with the token checked afresh: the statement may have refused one revoked elsewhere.
    if credentials is not None:
        state.tokens.forget(credentials.credentials)
    principal = await require_writer(await principal_of(request, state, credentials))
    repo = state.repository
    for _ in range(WRITE_ATTEMPTS):
        if principal.scope is Scope.ADMIN:
            updated = await repo.update_heartbeat(tool_id)
        else:
            updated = await repo.update_heartbeat_owned(tool_id, principal.owner)
        if updated:
            state.metrics.heartbeats.inc()
            return Response(status_code=status.HTTP_204_NO_CONTENT)
        await _why_not(state, principal, tool_id)  # raises 404 or 403
    raise ToolNotFoundError(tool_id)


@router.post(
    "/heartbeats",
    responses={
        **examples.answer(examples.HEARTBEATS_RESULT),
        **problems(400, 401, 403, 413, 422),
    },
)
async def heartbeats(
    body: Annotated[
        HeartbeatBatch,
        Body(openapi_examples=examples.body("Two ids, one retired", examples.HEARTBEATS)),
    ],
    principal: Writer,
    state: State,
) -> HeartbeatBatchResult:
    """Heartbeat many tools at once; ids that are not registered come back in ``unknown``.

    All or nothing: when the token does not own one of the registered ids, the
    answer is 403 naming them and no heartbeat is recorded.
    """
    ids = list(dict.fromkeys(body.tool_ids))
    if principal.scope is Scope.ADMIN:
        unknown = await state.repository.update_heartbeats(ids)
    else:
        unknown, denied = await state.repository.update_heartbeats_owned(ids, principal.owner)
        if denied:
            check_owners(principal, {}, denied)  # raises 403 naming them
    state.metrics.heartbeats.inc(len(ids) - len(unknown))
    return HeartbeatBatchResult(updated=len(ids) - len(unknown), unknown=unknown)
