"""``POST /v1/console/tools``: one page of the console's tools table, with health and counts.

What the web console needs beyond ``POST /v1/tools/search``: each row's health
(healthy / stale / critical, as the change feed last said: the live view), its
owner, the counts per health state, filters on health and on text in the
tool_id, and the feed position the page was read at (the console follows the
feed from there, so nothing between the read and the stream is missed).

Two ways to a page, both keyset on tool_id (a page never holds more than
``limit`` rows, and walking ``next_cursor`` visits every match once):

- capability containment, ``where`` or ``healthy_within_seconds`` given, or no
  health/text filter: the repository's search (the API's own validation and
  messages), the health and text filters applied to the rows it returns, at
  most ``SCAN_ROWS`` rows looked at per call (``partial``: the page stopped
  there; follow ``next_cursor`` for more);
- health or text filters alone: the live view's registrations, filtered in
  memory, the page's rows then read from the repository (fresh heartbeats).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field, field_validator

from omninode_bridge.api import examples
from omninode_bridge.api.auth import Reader
from omninode_bridge.api.consul.routes import live_view
from omninode_bridge.api.routes.common import State, problems
from omninode_bridge.api.schemas import SearchRequest
from omninode_bridge.api.state import AppState
from omninode_bridge.models import ModelToolRegistration, NodeType
from omninode_bridge.models.fields import check_unicode
from omninode_bridge.models.timestamps import UtcTimestamp
from omninode_bridge.services.cursors import decode_page_cursor, encode_page_cursor
from omninode_bridge.services.discovery.pools import declared_operations
from omninode_bridge.services.live_view import LiveTool, LiveView

__all__ = ["ConsolePage", "ConsoleQuery", "ConsoleTool", "HealthCounts", "router"]

router = APIRouter(prefix="/v1/console", tags=["console"])

Health = Literal["healthy", "stale", "critical"]
_HEALTHS: dict[str, Health] = {"healthy": "healthy", "stale": "stale", "critical": "critical"}
SCAN_ROWS = 5000
DEFAULT_LIMIT = 50


class ConsoleQuery(SearchRequest):
    """The search's filters (same meaning, same validation) plus the console's own."""

    operation: str | None = Field(
        default=None, min_length=1, max_length=128, description="Listed in capabilities.operations."
    )
    health: Health | None = Field(default=None, description="As the change feed last said.")
    tool_id_contains: str | None = Field(
        default=None, min_length=1, max_length=255, description="Case-insensitive."
    )
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=500, description="Rows per page at most.")

    @field_validator("operation", "tool_id_contains")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        # The operation goes into a JSONB containment query: what JSON cannot hold is refused.
        if value is not None and ("\x00" in value or not value.isprintable()):
            raise ValueError("must be printable text (no NUL or control characters)")
        return None if value is None else check_unicode(value)


class ConsoleTool(BaseModel):
    """One row of the tools table."""

    tool_id: str = Field(description="The tool's id.")
    node_type: NodeType = Field(description="Its ONEX node type.")
    operations: list[str] = Field(description="The operations it declares.")
    health: Health = Field(description="As the change feed last said.")
    last_heartbeat: UtcTimestamp | None = Field(description="UTC; null: never.")
    owner: str | None = Field(
        description="token NAME, a source (source:etcd), or null (registered without a token)."
    )


class HealthCounts(BaseModel):
    """Every registered tool, by health (not only those the filters match)."""

    total: int = Field(description="Registered tools.")
    healthy: int = Field(description="Heartbeating within the TTL and not critical.")
    stale: int = Field(description="No heartbeat within the TTL.")
    critical: int = Field(description="Failing their active health checks.")


class ConsolePage(BaseModel):
    """One page of rows; ``next_cursor`` is ``None`` after the last match."""

    items: list[ConsoleTool] = Field(description="The page's rows, by tool_id.")
    next_cursor: str | None = Field(description="Pass back as `cursor`; null after the last match.")
    counts: HealthCounts = Field(description="Every registered tool, by health.")
    position: str = Field(description="The change-feed cursor the page was read at.")
    partial: bool = Field(
        default=False,
        description=f"The page stopped after looking at {SCAN_ROWS} rows: more may match.",
    )


def _counts(view: LiveView) -> HealthCounts:
    counts = view.health_counts()  # kept by the view as changes apply: no walk
    return HealthCounts(total=sum(counts.values()), **counts)


def _health(view: LiveView, tool_id: str) -> Health:
    live = view.get(tool_id)
    # Not in the view yet: created a moment ago, and registration counts as a heartbeat.
    return "healthy" if live is None else _HEALTHS[live.health]


def _operations(registration: ModelToolRegistration) -> tuple[str, ...]:
    return declared_operations(registration.capabilities.get("operations"))


def _text_match(query: ConsoleQuery) -> Callable[[str], bool]:
    needle = (query.tool_id_contains or "").casefold()
    return lambda tool_id: needle in tool_id.casefold()


async def _owners(state: AppState, tool_ids: Sequence[str]) -> dict[str, str]:
    owners = await state.repository.get_owners(tool_ids)
    if any(owner.startswith("token:") for owner in owners.values()):
        names = {f"token:{t.id}": t.name for t in await state.tokens.list()}
        owners = {
            tool_id: (f"token {names[o]}" if o in names else "a revoked token")
            if o.startswith("token:")
            else o
            for tool_id, o in owners.items()
        }
    return owners


def _by_memory(view: LiveView, query: ConsoleQuery) -> tuple[list[str], str | None]:
    """The page's tool ids from the live view, and the next cursor."""
    after = decode_page_cursor(query.cursor) if query.cursor else ""
    text = _text_match(query)
    kind = query.node_type
    operation = query.operation

    def wanted(tool: LiveTool) -> bool:
        return (
            (kind is None or tool.digest.node_type is kind)
            and (query.health is None or tool.health == query.health)
            and text(tool.tool_id)
            # Last: only this needs the registration decoded.
            and (operation is None or operation in _operations(tool.registration))
        )

    # In tool_id order from the cursor, stopping at a page and one: a common match
    # costs a page's worth of tools, not the whole view.
    ids: list[str] = []
    for tool_id in view.ids_from(after or None):
        tool = view.get(tool_id)
        if tool is not None and wanted(tool):
            ids.append(tool_id)
            if len(ids) > query.limit:
                break
    more = len(ids) > query.limit
    ids = ids[: query.limit]
    return ids, encode_page_cursor(ids[-1]) if more else None


async def _by_search(
    state: AppState, view: LiveView, query: ConsoleQuery
) -> tuple[list[ModelToolRegistration], str | None, bool]:
    """The page from the repository's search; the rows, the next cursor, and ``partial``."""
    capabilities: dict[str, Any] | None = query.capabilities
    operation = query.operation
    if operation is not None and "operations" not in (capabilities or {}):
        capabilities = {**(capabilities or {}), "operations": [operation]}
        operation = None  # containment does it in the database
    text = _text_match(query)

    def wanted(registration: ModelToolRegistration) -> bool:
        return (
            (query.health is None or _health(view, registration.tool_id) == query.health)
            and text(registration.tool_id)
            and (operation is None or operation in _operations(registration))
        )

    filtered = query.health is not None or query.tool_id_contains or operation is not None
    batch = query.limit if not filtered else max(query.limit, 500)
    rows: list[ModelToolRegistration] = []
    cursor, scanned = query.cursor, 0
    while True:
        page = await state.repository.find_tools(
            capabilities=capabilities,
            node_type=query.node_type,
            max_age_seconds=query.healthy_within_seconds,
            where=query.where,
            limit=batch,
            cursor=cursor,
        )
        for index, registration in enumerate(page.items):
            scanned += 1
            if not wanted(registration):
                continue
            rows.append(registration)
            if len(rows) == query.limit:
                more = index < len(page.items) - 1 or page.next_cursor is not None
                return rows, encode_page_cursor(registration.tool_id) if more else None, False
        if page.next_cursor is None:
            return rows, None, False
        cursor = page.next_cursor
        if scanned >= SCAN_ROWS:
            return rows, cursor, True


@router.post(
    "/tools",
    responses={**examples.answer(examples.CONSOLE_PAGE), **problems(400, 401, 413, 422)},
)
async def console_tools(
    query: Annotated[
        ConsoleQuery,
        Body(openapi_examples=examples.body("Critical stampers", examples.CONSOLE_QUERY)),
    ],
    state: State,
    _: Reader,
) -> ConsolePage:
    """One page of the web console's tools table: rows with health and owner, the counts
    per health state, and the feed position to follow from. Filters combine with AND;
    ``capabilities``, ``where``, ``node_type`` and ``healthy_within_seconds`` mean what
    they mean in ``POST /v1/tools/search`` and are validated the same way."""
    position = await state.repository.feed.head_cursor()  # before reading: nothing missed
    view = await live_view(state)
    partial = False
    searching = query.capabilities is not None or query.where is not None
    if (
        searching
        or query.healthy_within_seconds is not None
        or (query.health is None and query.tool_id_contains is None)
    ):
        rows, next_cursor, partial = await _by_search(state, view, query)
    else:
        ids, next_cursor = _by_memory(view, query)
        rows = await state.repository.get_registrations(ids)
    owners = await _owners(state, [r.tool_id for r in rows])
    items = [
        ConsoleTool(
            tool_id=r.tool_id,
            node_type=r.node_type,
            operations=list(_operations(r)),
            health=_health(view, r.tool_id),
            last_heartbeat=r.last_heartbeat,
            owner=owners.get(r.tool_id),
        )
        for r in rows
    ]
    return ConsolePage(
        items=items,
        next_cursor=next_cursor,
        counts=_counts(view),
        position=position,
        partial=partial,
    )
