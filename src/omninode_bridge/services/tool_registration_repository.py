"""ToolRegistrationRepository: the usage guide's repository, for real.

The guide's eight methods keep its names, parameters and return types. "Not
found" is ``None``/``False`` only when the row is truly absent; every other
failure raises a typed error from :mod:`omninode_bridge.errors`. Every write
that changes a registration records a change-feed event in the same statement
(see :mod:`omninode_bridge.services.change_feed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
from pydantic import ValidationError

from omninode_bridge.errors import (
    PermissionDeniedError,
    QueryTimeoutError,
    RegistryOverloadedError,
    ToolAlreadyRegisteredError,
    ToolOwnedBySourceError,
    ValidationFailedError,
)
from omninode_bridge.models import (
    ChangeEvent,
    ModelToolRegistration,
    ModelToolRegistrationCreate,
    ModelToolRegistrationPage,
    ModelToolRegistrationUpdate,
    NodeType,
    ToolQuery,
)
from omninode_bridge.models.fields import TOOL_ID_PATTERN, check_json_object
from omninode_bridge.models.status import ModelToolRegistrationWithHealth
from omninode_bridge.services.change_feed import ChangeFeed
from omninode_bridge.services.cursors import decode_page_cursor, encode_page_cursor
from omninode_bridge.services.postgres_client import PostgresClient
from omninode_bridge.services.sql import load_queries

__all__ = ["ToolRegistrationRepository"]

Q = load_queries("tool_registrations.sql")


# Bounds of a heartbeat_time, judged on the database clock in the statement
# (tool_registrations.sql spells them out too).
MAX_FUTURE_HEARTBEAT = timedelta(minutes=1)
MAX_PAST_HEARTBEAT = timedelta(days=30)
_TOOL_ID = re.compile(TOOL_ID_PATTERN)


def could_be_registered(tool_id: object) -> bool:
    """False for a value no registration can have: such a lookup is simply "absent".

    Skipping the query also keeps strings PostgreSQL cannot even take (a NUL
    character) from turning a plain miss into a database error.
    """
    return isinstance(tool_id, str) and 0 < len(tool_id) <= 255 and bool(_TOOL_ID.match(tool_id))


def _rows(rows: Iterable[asyncpg.Record]) -> list[ModelToolRegistration]:
    """A model per row, built with the cyclic garbage collector paused.

    Every object built here stays reachable (the list holds it), so a
    collection in between could free nothing; yet tens of thousands of new
    objects would trigger several, full ones among them, each walking the
    whole heap: a third of the time of a large read. Nothing awaits in
    between, so no other task runs while the collector waits.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return [ModelToolRegistration.from_row(row) for row in rows]
    finally:
        if paused:
            gc.enable()


def _json_body(text: str | None) -> bytes | None:
    """The JSON text a statement built, as the bytes of a response body (``None``: no row)."""
    return text.encode() if text is not None else None


def _page_body(items: str, next_cursor: str | None) -> bytes:
    """A ModelToolRegistrationPage's JSON around ``items``, a JSON array PostgreSQL built."""
    return b'{"items":%s,"next_cursor":%s}' % (items.encode(), orjson.dumps(next_cursor))


def _tool_query(
    capabilities: dict[str, Any] | None,
    node_type: str | NodeType | None,
    max_age_seconds: float | None,
    where: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[ToolQuery, str | None]:
    """The validated filters of a search, and the tool_id its cursor points after."""
    try:
        query = ToolQuery(
            capabilities=capabilities,
            node_type=node_type,
            max_age_seconds=max_age_seconds,
            where=where,
            limit=limit,
            cursor=cursor,
        )
    except ValidationError as exc:
        raise _pydantic_errors(exc) from None
    after = decode_page_cursor(query.cursor) if query.cursor else None
    if after is not None and not could_be_registered(after):
        raise ValidationFailedError([("cursor", "is not a cursor returned by this registry")])
    return query, after


def _node_type(value: str | NodeType | None, field: str = "node_type") -> str | None:
    if value is None:
        return None
    try:
        return NodeType(value).value
    except ValueError:
        allowed = ", ".join(t.value for t in NodeType)
        raise ValidationFailedError([(field, f"{value!r} is not one of {allowed}")]) from None


def _pydantic_errors(exc: ValidationError) -> ValidationFailedError:
    return ValidationFailedError(
        [(".".join(str(p) for p in err["loc"]) or "input", err["msg"]) for err in exc.errors()]
    )


def _heartbeat_time(value: datetime | None) -> datetime | None:
    """``value`` made timezone-aware (naive means local time); its bounds are the database's."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValidationFailedError([("heartbeat_time", "must be a datetime")])
    if value.tzinfo is not None:
        return value
    try:
        return value.astimezone()
    except (ValueError, OverflowError):  # datetime.min or .max read as local time
        raise ValidationFailedError(
            [("heartbeat_time", f"{value.isoformat()} is out of range")]
        ) from None


def _out_of_bounds(when: datetime, verdict: str, db_now: datetime) -> ValidationFailedError:
    if verdict == "future":
        limit = f"more than {MAX_FUTURE_HEARTBEAT.total_seconds():g} seconds in the future"
    else:
        limit = f"more than {MAX_PAST_HEARTBEAT.days} days in the past"
    return ValidationFailedError(
        [
            (
                "heartbeat_time",
                f"{when.isoformat()} is {limit} (database clock: {db_now.isoformat()})",
            )
        ]
    )


def _create_args(reg: ModelToolRegistrationCreate) -> tuple[Any, ...]:
    return (
        reg.tool_id,
        reg.node_type.value,
        reg.capabilities,
        reg.endpoints,
        reg.metadata,
        reg.health_endpoint,
    )


class ToolRegistrationRepository:
    """CRUD, heartbeats and queries over ``tool_registrations`` through a PostgresClient.

    Statements go through the pool's prepared-statement cache; JSONB values
    cross as Python objects through the client's codec.
    """

    def __init__(self, postgres_client: PostgresClient) -> None:
        self.client = postgres_client
        self.feed = ChangeFeed(postgres_client)
        self._slots: asyncio.Semaphore | None = None  # created on first use, in the loop

    # -- the guide's eight methods (create, get, update, update_heartbeat, list_all,
    # -- delete, find_by_capability, get_healthy_tools), with their close relatives ---

    async def create_registration(
        self, registration: ModelToolRegistrationCreate, *, owner: str | None = None
    ) -> ModelToolRegistration:
        """Store a new tool; its registration counts as its first heartbeat.

        ``owner`` (e.g. ``token:<id>``) is recorded beside the row when given.
        Raises ToolAlreadyRegisteredError (naming the id) when ``tool_id`` is taken.
        """
        row = await self.client.fetchrow(
            Q["create_registration"], *_create_args(registration), owner
        )
        if row is None:
            raise ToolAlreadyRegisteredError([registration.tool_id])
        return ModelToolRegistration.from_row(row)

    async def get_registration(self, tool_id: str) -> ModelToolRegistration | None:
        """The registration of ``tool_id``, or ``None`` when no such tool is registered."""
        if not could_be_registered(tool_id):
            return None
        row = await self.client.fetchrow(Q["get_registration"], tool_id)
        return ModelToolRegistration.from_row(row) if row is not None else None

    async def get_registrations(self, tool_ids: Sequence[str]) -> list[ModelToolRegistration]:
        """The registrations of those of ``tool_ids`` that are registered, by tool_id."""
        ids = [i for i in dict.fromkeys(tool_ids) if could_be_registered(i)]
        return _rows(await self.client.fetch(Q["get_registrations"], ids)) if ids else []

    async def get_registration_with_health(
        self, tool_id: str, ttl_seconds: float
    ) -> ModelToolRegistrationWithHealth | None:
        """The registration of ``tool_id`` with its health now (one statement); ``None`` if absent.

        Heartbeat freshness is judged on the database clock against ``ttl_seconds``.
        """
        body = await self.get_registration_with_health_json(tool_id, ttl_seconds)
        return ModelToolRegistrationWithHealth.model_validate_json(body) if body else None

    async def get_registration_with_health_json(
        self, tool_id: str, ttl_seconds: float
    ) -> bytes | None:
        """:meth:`get_registration_with_health` as the JSON the API answers, built by
        PostgreSQL; ``None`` if absent."""
        if not could_be_registered(tool_id):
            return None
        return _json_body(
            await self.client.fetchval(
                Q["get_registration_with_health"], tool_id, float(ttl_seconds)
            )
        )

    async def update_registration(
        self,
        tool_id: str,
        update: ModelToolRegistrationUpdate,
        *,
        owner: str | None = None,
        writer: str | None = None,
        take_over: bool = False,
    ) -> ModelToolRegistration | None:
        """Change the fields ``update`` sets (JSONB fields replaced whole); ``None`` if absent.

        An update that sets nothing writes nothing and returns the current row.
        With ``owner``, the tool is changed only if that is its owner, checked
        in the same statement (``None`` otherwise: absent or not owned).

        With ``writer`` (who writes, e.g. an admin's ``token:<id>``), a tool
        that an auto-discovery source other than ``writer`` owns is not
        changed: ToolOwnedBySourceError naming the source, decided in the same
        statement. ``take_over`` changes it anyway and makes ``writer`` its owner.
        """
        if update.is_empty or not could_be_registered(tool_id):
            return await self.get_registration(tool_id)
        fields = update.model_fields_set
        row = await self.client.fetchrow(
            Q["update_registration"],
            tool_id,
            update.node_type.value if update.node_type is not None else None,
            update.capabilities,
            update.endpoints,
            update.metadata,
            "health_endpoint" in fields,
            update.health_endpoint,
            owner,
            writer is not None and not take_over,
            writer,
            take_over,
        )
        if row is None and writer is not None and not take_over:
            await self._refuse_if_source_owned(tool_id, writer)
        return ModelToolRegistration.from_row(row) if row is not None else None

    async def _refuse_if_source_owned(self, tool_id: str, writer: str) -> None:
        """After a protected write changed nothing: ToolOwnedBySourceError if that is why."""
        holder = await self.get_owner(tool_id)
        if holder is not None and holder.startswith("source:") and holder != writer:
            raise ToolOwnedBySourceError(tool_id, holder)

    async def update_heartbeat(self, tool_id: str, heartbeat_time: datetime | None = None) -> bool:
        """Record a heartbeat now (database clock) or at ``heartbeat_time``; ``False`` if absent.

        ``heartbeat_time`` must lie within the bounds judged on the database
        clock in the statement itself: at most ``MAX_FUTURE_HEARTBEAT`` (a
        minute) ahead and ``MAX_PAST_HEARTBEAT`` (30 days) back; otherwise
        ValidationFailedError, and nothing is written. A naive one is read as
        local time. The heartbeat may move backwards: the row then holds the
        earlier time, and discovery follows it.
        """
        when = _heartbeat_time(heartbeat_time)
        if not could_be_registered(tool_id):
            await self._heartbeat_slow([], when, None)  # still judge the time
            return False
        status = await self.client.execute(Q["update_heartbeat"], tool_id, when)
        if status.endswith(" 1"):
            return True
        return bool(await self._heartbeat_slow([tool_id], when, None))

    async def update_heartbeat_owned(self, tool_id: str, owner: str) -> bool:
        """Heartbeat ``tool_id`` now if ``owner`` owns it; ``False`` if absent or not owned."""
        if not could_be_registered(tool_id):
            return False
        status = await self.client.execute(Q["update_heartbeat_owned"], tool_id, owner)
        if status.endswith(" 1"):
            return True
        return bool(await self._heartbeat_slow([tool_id], None, owner))

    async def expire_heartbeat(self, tool_id: str, owner: str, at: datetime) -> bool:
        """Set the heartbeat of a tool ``owner`` owns to ``at``, bounds aside; ``False`` if not.

        For an auto-discovery source whose announcement went (the tool then
        reads unhealthy at once); the move backwards reaches discovery at once.
        """
        if not could_be_registered(tool_id):
            return False
        return bool(await self._heartbeat_slow([tool_id], at, owner, bounded=False))

    async def _heartbeat_slow(
        self, tool_ids: list[str], when: datetime | None, owner: str | None, *, bounded: bool = True
    ) -> list[str]:
        """Heartbeats the fast statements left (see heartbeat_slow); the ids written."""
        row = await self.client.fetchrow(Q["heartbeat_slow"], tool_ids, when, owner, bounded)
        assert row is not None  # a SELECT of scalars always returns one row
        if row["verdict"] != "ok":
            assert when is not None
            raise _out_of_bounds(when, row["verdict"], row["db_now"])
        return list(row["tool_ids"])

    async def list_all_registrations(
        self, node_type: str | NodeType | None = None
    ) -> list[ModelToolRegistration]:
        """Every registration (or those of ``node_type``), ordered by tool_id."""
        kind = _node_type(node_type)
        if kind is None:
            return _rows(await self.client.fetch(Q["list_all"]))
        return _rows(await self.client.fetch(Q["list_by_node_type"], kind))

    async def delete_registration(
        self, tool_id: str, reason: str | None = None, *, owner: str | None = None
    ) -> bool:
        """Remove ``tool_id``; ``False`` when it was not registered.

        ``reason`` goes to the change feed. With ``owner``, the tool is removed
        only if that is its owner (``False`` otherwise), in the same statement.
        """
        if not could_be_registered(tool_id):
            return False
        count = await self.client.fetchval(Q["delete_registration"], tool_id, reason, owner)
        return bool(count)

    async def find_by_capability(
        self, capability_key: str, capability_value: Any
    ) -> list[ModelToolRegistration]:
        """Tools whose capabilities contain ``{capability_key: capability_value}`` (JSONB ``@>``).

        A list value means "contains all of these"; a scalar means equality.
        Ordered by tool_id; served by the GIN index.
        """
        if not isinstance(capability_key, str):
            raise ValidationFailedError([("capability_key", "must be a string")])
        try:
            probe = check_json_object({capability_key: capability_value})
        except ValueError as exc:
            raise ValidationFailedError([("capability_value", str(exc))]) from None
        return _rows(await self.client.fetch(Q["find_by_capability"], probe))

    async def get_healthy_tools(self, max_age_seconds: int = 300) -> list[ModelToolRegistration]:
        """Tools whose last heartbeat is within ``max_age_seconds`` of the database clock."""
        if not isinstance(max_age_seconds, int | float) or max_age_seconds <= 0:
            raise ValidationFailedError([("max_age_seconds", "must be a positive number")])
        return _rows(await self.client.fetch(Q["get_healthy_tools"], float(max_age_seconds)))

    # -- beyond the guide -----------------------------------------------------

    async def upsert_registration(
        self,
        registration: ModelToolRegistrationCreate,
        *,
        owner: str | None = None,
        owned_only: bool = False,
        protect_sources: bool = False,
        take_over: bool = False,
    ) -> tuple[ModelToolRegistration, bool]:
        """Create or replace ``registration`` (a restarting tool); ``True`` when it was created.

        Replacing keeps ``id``, ``registered_at`` and the owner, refreshes the
        heartbeat, and records a change event only when the content differs.
        ``owner`` is recorded only when the tool is created. With
        ``owned_only``, an existing tool is replaced only if ``owner`` owns it,
        decided in the same statement as the write (no race can slip between):
        otherwise PermissionDeniedError and nothing is written. With
        ``protect_sources``, a tool that an auto-discovery source other than
        ``owner`` owns is not replaced either (ToolOwnedBySourceError naming
        it); ``take_over`` replaces any tool and makes ``owner`` its owner.
        """
        if (owned_only or take_over) and owner is None:
            raise ValidationFailedError([("owner", "is required with owned_only or take_over")])
        row = await self.client.fetchrow(
            Q["upsert_registration"],
            *_create_args(registration),
            owner,
            owned_only,
            protect_sources and not take_over,
            take_over,
        )
        if row is None:
            if protect_sources and owner is not None:
                await self._refuse_if_source_owned(registration.tool_id, owner)
            raise PermissionDeniedError(
                f"tool {registration.tool_id!r} is registered by another owner"
            )
        return ModelToolRegistration.from_row(row), bool(row["created"])

    async def create_registrations(
        self, registrations: Sequence[ModelToolRegistrationCreate], *, owner: str | None = None
    ) -> list[ModelToolRegistration]:
        """Register a batch in one statement and one transaction: all or nothing.

        Raises ToolAlreadyRegisteredError naming every ``tool_id`` already taken,
        and ValidationFailedError for ids repeated within the batch; nothing is
        written then. Results come in input order.
        """
        if not registrations:
            return []
        ids = [r.tool_id for r in registrations]
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        if repeated:
            raise ValidationFailedError(
                [("registrations", f"tool_id {i!r} appears more than once") for i in repeated]
            )
        columns = list(zip(*(_create_args(r) for r in registrations), strict=True))
        async with self.client.transaction() as conn:
            rows = await conn.fetch(Q["create_registrations"], *(list(c) for c in columns), owner)
            if len(rows) != len(ids):
                stored = {row["tool_id"] for row in rows}
                # Raising inside the transaction rolls the whole batch back.
                raise ToolAlreadyRegisteredError([i for i in ids if i not in stored])
        by_id = {row["tool_id"]: row for row in rows}
        return [ModelToolRegistration.from_row(by_id[i]) for i in ids]

    async def update_heartbeats(
        self, tool_ids: Sequence[str], heartbeat_time: datetime | None = None
    ) -> list[str]:
        """Heartbeat many tools (one statement, usually); returns the ids that are not registered.

        ``heartbeat_time`` as in :meth:`update_heartbeat`.
        """
        if isinstance(tool_ids, str):
            raise ValidationFailedError(
                [("tool_ids", "must be a list of tool ids, not one string")]
            )
        wanted = list(dict.fromkeys(tool_ids))
        when = _heartbeat_time(heartbeat_time)
        possible = [i for i in wanted if could_be_registered(i)]
        found: set[str] = set()
        if possible:
            rows = await self.client.fetch(Q["update_heartbeats"], possible, when)
            found = {row["tool_id"] for row in rows}
        left = [i for i in possible if i not in found]
        if left or (when is not None and not possible):  # backwards, absent, or out of bounds
            found.update(await self._heartbeat_slow(left, when, None))
        return [i for i in wanted if i not in found]

    async def update_heartbeats_owned(
        self, tool_ids: Sequence[str], owner: str
    ) -> tuple[list[str], list[str]]:
        """Heartbeat many tools of ``owner`` in one statement, all or nothing.

        Returns ``(unknown, denied)``: ids not registered, and registered ids
        ``owner`` does not own. When ``denied`` is not empty nothing was written.
        """
        wanted = list(dict.fromkeys(tool_ids))
        possible = [i for i in wanted if could_be_registered(i)]
        if not possible:
            return wanted, []
        row = await self.client.fetchrow(Q["update_heartbeats_owned"], possible, owner)
        assert row is not None  # a SELECT of two arrays always returns one row
        denied = set(row["denied"])
        if denied:
            return [], [i for i in wanted if i in denied]
        updated = set(row["updated"])
        left = [i for i in possible if i not in updated]
        if left:  # absent, or a heartbeat in the future moving back to now
            updated.update(await self._heartbeat_slow(left, None, owner))
        return [i for i in wanted if i not in updated], []

    async def get_owner(self, tool_id: str) -> str | None:
        """Who owns ``tool_id`` (``token:<id>`` or ``source:<name>``).

        ``None`` when the tool has no owner or is not registered.
        """
        if not could_be_registered(tool_id):
            return None
        owner = await self.client.fetchval(Q["get_owner"], tool_id)
        return str(owner) if owner is not None else None

    async def get_registration_owner(self, tool_id: str) -> tuple[bool, str | None]:
        """Whether ``tool_id`` is registered, and its owner (``None``: none), read together.

        Two separate reads can straddle a delete and a re-create and pair "no owner"
        with "registered": a tool that never was unowned.
        """
        if not could_be_registered(tool_id):
            return False, None
        row = await self.client.fetchrow(Q["registration_owner"], tool_id)
        assert row is not None  # the query answers one row for any id
        owner = row["owner"]
        return bool(row["registered"]), str(owner) if owner is not None else None

    async def get_owners(self, tool_ids: Sequence[str]) -> dict[str, str]:
        """The owners of those of ``tool_ids`` that have one."""
        rows = await self.client.fetch(
            Q["get_owners"], [i for i in tool_ids if could_be_registered(i)]
        )
        return {row["tool_id"]: row["owner"] for row in rows}

    async def existing_tool_ids(self, tool_ids: Sequence[str]) -> set[str]:
        """Which of ``tool_ids`` are registered."""
        rows = await self.client.fetch(
            Q["existing_tool_ids"], [i for i in tool_ids if could_be_registered(i)]
        )
        return {row["tool_id"] for row in rows}

    async def count_registrations(self, node_type: str | NodeType | None = None) -> int:
        """How many tools are registered (of ``node_type``, when given)."""
        kind = _node_type(node_type)
        if kind is None:
            return int(await self.client.fetchval(Q["count_all"]))
        return int(await self.client.fetchval(Q["count_by_node_type"], kind))

    async def count_per_node_type(self) -> dict[str, int]:
        """How many tools of each node type are registered (every type present, zeros too)."""
        counts = {kind.value: 0 for kind in NodeType}
        for row in await self.client.fetch(Q["count_per_node_type"]):
            counts[row["node_type"]] = int(row["n"])
        return counts

    async def count_healthy(self, max_age_seconds: float) -> int:
        """How many tools heartbeated within ``max_age_seconds`` (database clock)."""
        return int(await self.client.fetchval(Q["count_healthy"], float(max_age_seconds)))

    async def find_tools(
        self,
        *,
        capabilities: dict[str, Any] | None = None,
        node_type: str | NodeType | None = None,
        max_age_seconds: float | None = None,
        where: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        bounded: bool = True,
    ) -> ModelToolRegistrationPage:
        """One page of tools matching every filter given, ordered by tool_id.

        ``capabilities``: JSONB containment; ``max_age_seconds``: heartbeat
        within that many seconds (database clock); ``where``: a SQL/JSON path
        predicate on capabilities, e.g. ``$.max_file_size >= 5000000``, passed
        as a bind parameter. Walk pages with ``cursor=page.next_cursor``
        (keyset pagination: no OFFSET, nothing visited twice).

        A query whose shape a client chose is bounded: one of
        ``TOOLREG_SEARCH_CONCURRENCY`` slots (RegistryOverloadedError when none
        frees up in time) and ``TOOLREG_QUERY_TIMEOUT_SECONDS`` per statement
        (QueryTimeoutError). ``bounded=False`` is for internal callers whose
        query is fixed and cheap (the discovery index's page-by-page load),
        which must not queue behind clients' searches.
        """
        query, after = _tool_query(capabilities, node_type, max_age_seconds, where, limit, cursor)
        rows = await self._search(Q["find_tools"], query, after, bounded=bounded)
        items = _rows(rows[: query.limit])
        next_cursor = encode_page_cursor(items[-1].tool_id) if len(rows) > query.limit else None
        return ModelToolRegistrationPage(items=items, next_cursor=next_cursor)

    async def find_tools_json(
        self,
        *,
        capabilities: dict[str, Any] | None = None,
        node_type: str | NodeType | None = None,
        max_age_seconds: float | None = None,
        where: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> bytes:
        """:meth:`find_tools`' page, bounded the same way, as the JSON the API answers.

        PostgreSQL builds the items' JSON (see ``find_tools_json`` in
        tool_registrations.sql): no row becomes a Python object on the way.
        """
        query, after = _tool_query(capabilities, node_type, max_age_seconds, where, limit, cursor)
        [row] = await self._search(Q["find_tools_json"], query, after, bounded=True)
        last = row["last"]
        return _page_body(row["items"], encode_page_cursor(last) if last is not None else None)

    async def _search(
        self, statement: str, query: ToolQuery, after: str | None, *, bounded: bool
    ) -> list[asyncpg.Record]:
        """Run ``statement`` (``find_tools`` or a statement around it) for ``query``.

        Its parameters are find_tools': the filters, ``after`` and the page
        size plus one. Bounded as :meth:`find_tools` says.
        """
        limit_seconds = self.client.settings.query_timeout_seconds
        slot = self._client_query_slot() if bounded else contextlib.nullcontext()
        async with slot, self.client.transaction() as conn:
            # The optional filters make one generic plan a poor fit for all of
            # them; a custom plan per call lets each use its index. A caller's
            # `where` can cost anything: the statement timeout bounds it.
            await conn.fetchval(Q["bound_client_query"], f"{round(limit_seconds * 1000)}ms")
            if query.where is not None:
                await self._check_jsonpath(conn, query.where)
            try:
                return await conn.fetch(
                    statement,
                    query.capabilities,
                    query.node_type.value if query.node_type else None,
                    query.max_age_seconds,
                    query.where,
                    after,
                    query.limit + 1,
                )
            except asyncpg.QueryCanceledError as exc:
                if "statement timeout" not in str(exc):
                    raise
                raise QueryTimeoutError(limit_seconds, "the search") from exc

    @asynccontextmanager
    async def _client_query_slot(self) -> AsyncIterator[None]:
        """One of ``TOOLREG_SEARCH_CONCURRENCY`` slots for a query a client shapes.

        Such queries can never hold more connections than that, so point
        reads, heartbeats and the change feed always find one. Waiting longer
        than ``TOOLREG_POOL_ACQUIRE_TIMEOUT_SECONDS`` for a slot raises
        RegistryOverloadedError.
        """
        settings = self.client.settings
        if self._slots is None:
            self._slots = asyncio.Semaphore(settings.search_concurrency)
        try:
            async with asyncio.timeout(settings.pool_acquire_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise RegistryOverloadedError(
                f"all {settings.search_concurrency} slots for searches "
                f"(TOOLREG_SEARCH_CONCURRENCY) stayed busy for {settings.pool_acquire_timeout:g}s: "
                "the registry is overloaded; retry shortly"
            ) from None
        try:
            yield
        finally:
            self._slots.release()

    @staticmethod
    async def _check_jsonpath(conn: Any, where: str) -> None:
        try:
            async with conn.transaction():  # a savepoint: the outer transaction survives
                await conn.fetchval(Q["check_jsonpath"], where)
        except (asyncpg.PostgresSyntaxError, asyncpg.DataError) as exc:
            raise ValidationFailedError(
                [("where", f"is not a valid SQL/JSON path: {exc}")]
            ) from exc

    # -- change feed ------------------------------------------------------------

    async def changes(self, since_cursor: str | None = None, limit: int = 500) -> list[ChangeEvent]:
        """The change events after ``since_cursor`` (see ChangeFeed.changes)."""
        return await self.feed.changes(since_cursor, limit)

    def watch(self, since_cursor: str | None = None) -> AsyncIterator[ChangeEvent]:
        """Replay from ``since_cursor``, then follow new events (see ChangeFeed.watch)."""
        return self.feed.watch(since_cursor)
