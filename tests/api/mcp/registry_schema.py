"""The MCP registry's schemas, to validate what ``/v0.1`` answers (see ``schema/README.md``).

``server``: the official server.json schema (2025-12-11), shipped unmodified in
``schema/server.schema.json``. The envelope (``ServerResponse``, ``ServerList``
and the ``io.modelcontextprotocol.registry/official`` metadata) is transcribed
from the same repository's ``docs/reference/api/openapi.yaml``; the official
metadata's four members are required here, as the registry always sends them.

``jsonschema`` checks the ``uri`` and ``date-time`` formats only with optional
packages; the two checks below stand in for them (RFC 3986 absolute URIs, RFC
3339 timestamps with an offset).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry, Resource

__all__ = ["OFFICIAL", "SERVER_SCHEMA", "check_entry", "check_listing", "check_server"]

SERVER_SCHEMA: dict[str, Any] = json.loads(
    (Path(__file__).parent / "schema" / "server.schema.json").read_text(encoding="utf-8")
)
SERVER_ID: str = SERVER_SCHEMA["$id"]
OFFICIAL = "io.modelcontextprotocol.registry/official"
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")

_formats = FormatChecker()


@_formats.checks("uri")
def _uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme)) and " " not in value


@_formats.checks("date-time")
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return bool(_RFC3339.match(value)) and datetime.fromisoformat(value).tzinfo is not None


_OFFICIAL_META = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["active", "deprecated", "deleted"]},
        "publishedAt": {"type": "string", "format": "date-time"},
        "updatedAt": {"type": "string", "format": "date-time"},
        "isLatest": {"type": "boolean"},
    },
    "required": ["status", "publishedAt", "updatedAt", "isLatest"],
    "additionalProperties": False,
}
_SERVER_RESPONSE = {
    "type": "object",
    "required": ["server", "_meta"],
    "properties": {
        "server": {"$ref": SERVER_ID},
        "_meta": {
            "type": "object",
            "required": [OFFICIAL],
            "properties": {OFFICIAL: _OFFICIAL_META},
            "additionalProperties": True,
        },
    },
}
_SERVER_LIST = {
    "type": "object",
    "required": ["servers", "metadata"],
    "properties": {
        "servers": {"type": "array", "items": _SERVER_RESPONSE},
        "metadata": {
            "type": "object",
            "required": ["count"],
            "properties": {"nextCursor": {"type": "string"}, "count": {"type": "integer"}},
        },
    },
}
_registry: Registry[Any] = Registry().with_resource(
    SERVER_ID, Resource.from_contents(SERVER_SCHEMA)
)


def _validator(schema: dict[str, Any]) -> Draft7Validator:
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema, registry=_registry, format_checker=_formats)


_SERVER = _validator(SERVER_SCHEMA)
_RESPONSE = _validator(_SERVER_RESPONSE)
_LIST = _validator(_SERVER_LIST)


def _check(validator: Draft7Validator, document: Any) -> None:
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def check_server(server: dict[str, Any]) -> None:
    """``server`` is a valid server.json."""
    _check(_SERVER, server)


def check_entry(entry: dict[str, Any]) -> None:
    """``entry`` is a valid ``ServerResponse`` with a valid server.json."""
    _check(_RESPONSE, entry)
    check_server(entry["server"])


def check_listing(body: dict[str, Any]) -> None:
    """``body`` is a valid ``ServerList`` whose ``count`` is its length."""
    _check(_LIST, body)
    assert body["metadata"]["count"] == len(body["servers"])
    for entry in body["servers"]:
        check_server(entry["server"])
