"""The MCP registry's read API, version ``v0.1``, over the registry's MCP servers.

``GET /v0.1/servers`` (``cursor``, ``limit`` 1-100 default 30, ``search`` as a
case-insensitive substring of the name or the description, ``updated_since``
RFC 3339 (entries whose registrations changed after it), ``version`` exact or
``latest``), ``GET /v0.1/servers/{name}/versions`` and
``GET /v0.1/servers/{name}/versions/{version}`` (``latest`` allowed), as
modelcontextprotocol/registry's ``docs/reference/api/openapi.yaml`` describes
them; names are URL-encoded (``com.example%2Fserver``). An unknown server or
version is a 404 ``{"error": "Server not found"}``. Entries come from the live
view (see :mod:`omninode_bridge.api.mcp.servers`); reads need a token when
``TOOLREG_READS_REQUIRE_TOKEN`` is set. Publishing is not offered: tools
register through the registry's own API. ``include_deleted`` is accepted and
changes nothing: a deleted tool is gone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response

from omninode_bridge.api.auth import Reader
from omninode_bridge.api.consul.routes import live_view
from omninode_bridge.api.mcp.cursors import decode_cursor, encode_cursor
from omninode_bridge.api.mcp.servers import Catalog, ServerVersion, newer_first
from omninode_bridge.api.routes.common import State
from omninode_bridge.errors import ValidationFailedError

__all__ = ["registry_router"]

DEFAULT_LIMIT = 30
MAX_LIMIT = 100
_NOT_FOUND = orjson.dumps({"error": "Server not found"})


def _answer(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _not_found() -> Response:
    return Response(_NOT_FOUND, status_code=404, media_type="application/json")


def _cursor_of(entry: ServerVersion) -> str:
    # The publication time too: where a version that is gone stood among its name's others.
    published = entry.published_at.isoformat() if entry.published_at is not None else None
    return encode_cursor(orjson.dumps([entry.name, entry.version, published]).decode())


def _parse_cursor(cursor: str) -> ServerVersion:
    """The entry a cursor points at, as far as ordering goes (it may be gone since)."""
    text = decode_cursor(cursor)
    try:
        fields = orjson.loads(text) if text is not None else None
    except ValueError:
        fields = None
    # Two fields: a cursor given out before the publication time was added.
    if isinstance(fields, list) and len(fields) in (2, 3):
        name, version, published = (*fields, None)[:3]
        if isinstance(name, str) and isinstance(version, str):
            try:
                at = datetime.fromisoformat(published) if isinstance(published, str) else None
            except ValueError:
                at = None
            if published is None or (at is not None and at.tzinfo is not None):
                return ServerVersion(name, version, (), at, None)
    raise ValidationFailedError([("cursor", "is not a cursor this registry gave out")])


def _after(entries: list[ServerVersion], cursor: str) -> list[ServerVersion]:
    """The entries after ``cursor``: after its entry, or where it stood once it is gone
    (its name's versions older than it, then the names after it)."""
    mark = _parse_cursor(cursor)
    for i, entry in enumerate(entries):
        if entry.name == mark.name and entry.version == mark.version:
            return entries[i + 1 :]
    return [
        e
        for e in entries
        if e.name > mark.name or (e.name == mark.name and newer_first(mark, e) < 0)
    ]


def _listing(entries: list[ServerVersion], next_cursor: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"count": len(entries)}
    if next_cursor is not None:
        metadata["nextCursor"] = next_cursor
    return {"servers": [e.as_json() for e in entries], "metadata": metadata}


def registry_router(catalog: Catalog) -> APIRouter:
    """The ``/v0.1`` routes over ``catalog`` (one per app)."""
    router = APIRouter(prefix="/v0.1", tags=["mcp registry"], include_in_schema=False)

    @router.get("/servers")
    async def list_servers(
        state: State,
        _: Reader,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        search: Annotated[str | None, Query(max_length=200)] = None,
        updated_since: datetime | None = None,
        version: Annotated[str | None, Query(max_length=255)] = None,
        include_deleted: bool = False,
    ) -> Response:
        """Every server version, by name, each name's versions newest first; paged."""
        entries = catalog.all(await live_view(state))
        if cursor:
            entries = _after(entries, cursor)
        if search:
            needle = search.lower()
            entries = [
                e for e in entries if needle in e.name.lower() or needle in e.description.lower()
            ]
        if updated_since is not None:
            # Compared as given (naive means UTC): converting an extreme offset to UTC
            # (9999-12-31T23:59:59-23:59) would leave datetime's range.
            since = updated_since
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            entries = [e for e in entries if e.updated_at is not None and e.updated_at > since]
        if version == "latest":
            entries = [e for e in entries if e.is_latest]
        elif version:
            entries = [e for e in entries if e.version == version]
        page = entries[:limit]
        more = len(entries) > limit
        return _answer(_listing(page, _cursor_of(page[-1]) if more else None))

    @router.get("/servers/{server_name:path}/versions")
    async def server_versions(
        server_name: str, state: State, _: Reader, include_deleted: bool = False
    ) -> Response:
        """Every version of one server, newest first."""
        versions = catalog.versions(await live_view(state), server_name)
        return _not_found() if versions is None else _answer(_listing(versions, None))

    @router.get("/servers/{server_name:path}/versions/{version}")
    async def server_version(
        server_name: str, version: str, state: State, _: Reader, include_deleted: bool = False
    ) -> Response:
        """One version of one server; ``latest`` is the newest."""
        versions = catalog.versions(await live_view(state), server_name) or []
        for entry in versions:
            if entry.version == version or (version == "latest" and entry.is_latest):
                return _answer(entry.as_json())
        return _not_found()

    return router
