"""Field rules shared by the registration models: ids, URLs, and JSON objects.

Every rule raises ``ValueError`` with a message that pydantic attaches to the
field's ``loc``, so a rejection always names the field (``endpoints.stamp``,
``capabilities``...). JSON objects are normalized to what PostgreSQL's jsonb
will store and return (tuples become lists, integral floats from 1e16 on
become integers), so a registration reads back exactly as the model held it.
"""

from __future__ import annotations

import math
import re
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from pydantic import AfterValidator, Field, ValidationInfo

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_JSON_BYTES",
    "Endpoints",
    "HealthUrl",
    "JsonLimits",
    "JsonObject",
    "ToolId",
    "check_json_object",
    "check_registration_size",
    "check_unicode",
    "check_url",
    "json_limits",
]

TOOL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
DEFAULT_MAX_JSON_BYTES = 64 * 1024
DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_REGISTRATION_BYTES = 256 * 1024
ENDPOINT_MAX_LENGTH = 2048
HEALTH_ENDPOINT_MAX_LENGTH = 500  # the column is VARCHAR(500)
MAX_ENDPOINTS = 512
_OPERATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def check_unicode(value: str) -> str:
    """``value`` unchanged; ``ValueError`` if it holds lone surrogates (not encodable as UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def check_url(value: str, max_length: int) -> str:
    """An absolute http(s) URL with a host, at most ``max_length`` characters."""
    if len(value) > max_length:
        raise ValueError(f"URL is {len(value)} characters; at most {max_length} allowed")
    if _CONTROL.search(value):
        raise ValueError("URL must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise ValueError(f"URL is malformed ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("URL must be absolute and start with http:// or https://")
    if not parts.hostname:
        raise ValueError("URL must name a host (http://host[:port]/path)")
    return value


def _endpoint_url(value: str) -> str:
    return check_url(value, ENDPOINT_MAX_LENGTH)


def _health_url(value: str) -> str:
    return check_url(value, HEALTH_ENDPOINT_MAX_LENGTH)


def _check_endpoints(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_ENDPOINTS:
        raise ValueError(f"has {len(value)} endpoints; at most {MAX_ENDPOINTS} allowed")
    for operation in value:
        if not _OPERATION.match(operation):
            raise ValueError(
                f"operation name {operation[:60]!r} must be 1-128 characters of "
                "letters, digits and . _ : @ / - (starting with a letter or digit)"
            )
    return value


_EXACT_FLOAT_LIMIT = 1e16  # from here on, jsonb prints integral floats as integers
_INT64 = 2**63


def _number(value: float) -> float | int:
    if not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    if abs(value) >= _EXACT_FLOAT_LIMIT and value.is_integer():
        # jsonb stores 3.95e16 as the integer 39500000000000000 and returns it
        # as such; hold the same value here so that what is stored is returned.
        if abs(value) >= _INT64:
            raise ValueError("numbers must be within ±9.2e18 when they have no fraction")
        return int(Decimal(repr(value)))
    return value


def _normalize(value: Any, depth: int, max_depth: int) -> Any:
    """``value`` as jsonb will return it; ValueError naming the rule it breaks."""
    if depth > max_depth:
        raise ValueError(f"nesting is deeper than {max_depth} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("strings must not contain the NUL character (\\u0000)")
        return value
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise ValueError("integers must fit in 64 bits")
        return value
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"object keys must be strings, got {type(key).__name__}")
            if "\x00" in key:
                raise ValueError("keys must not contain the NUL character (\\u0000)")
            out[key] = _normalize(item, depth + 1, max_depth)
        return out
    if isinstance(value, list | tuple):
        return [_normalize(item, depth + 1, max_depth) for item in value]
    raise ValueError(
        "values must be JSON (object, array, string, number, bool, null), "
        f"got {type(value).__name__}"
    )


def check_json_object(
    value: dict[str, Any],
    max_bytes: int = DEFAULT_MAX_JSON_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> dict[str, Any]:
    """A JSON object as jsonb will store and return it; ValueError naming the broken rule."""
    normalized: dict[str, Any] = _normalize(value, 1, max_depth)
    try:
        encoded = orjson.dumps(normalized)
    except (orjson.JSONEncodeError, TypeError) as exc:  # e.g. lone surrogates in strings
        raise ValueError(f"is not encodable as JSON ({exc})") from None
    if len(encoded) > max_bytes:
        raise ValueError(f"is {len(encoded)} bytes as JSON; at most {max_bytes} allowed")
    return normalized


@dataclass(frozen=True, slots=True)
class JsonLimits:
    """Bounds for capabilities and metadata (TOOLREG_MAX_JSON_BYTES and the nesting depth),
    and for a registration's JSON fields together (TOOLREG_MAX_REGISTRATION_BYTES)."""

    max_bytes: int = DEFAULT_MAX_JSON_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    max_registration_bytes: int = DEFAULT_MAX_REGISTRATION_BYTES


def check_registration_size(**fields: Any) -> None:
    """ValueError when the JSON fields given (capabilities, endpoints, metadata) together
    exceed the registration bound in force; the message names each field's size."""
    limit = json_limits.get().max_registration_bytes
    sizes = {name: len(orjson.dumps(value)) for name, value in fields.items() if value is not None}
    total = sum(sizes.values())
    if total > limit:
        parts = ", ".join(f"{name} {size}" for name, size in sizes.items())
        raise ValueError(
            f"capabilities, endpoints and metadata are {total} bytes of JSON together "
            f"({parts}); at most {limit} allowed (TOOLREG_MAX_REGISTRATION_BYTES)"
        )


# The bounds in force for the current task: a server sets them per request from
# its settings (json_limits.set(...)); a validation context can override them.
json_limits: ContextVar[JsonLimits] = ContextVar("json_limits", default=JsonLimits())  # noqa: B039 - frozen


def _json_object(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    limits = json_limits.get()
    context = info.context if isinstance(info.context, dict) else {}
    return check_json_object(
        value,
        int(context.get("max_json_bytes", limits.max_bytes)),
        int(context.get("max_json_depth", limits.max_depth)),
    )


# The JSON Schema of each rule states what its validator enforces that JSON Schema
# can say (documentation only: the validators above decide, with their messages).
# The URL pattern is necessary, not sufficient: the host rule is in the description.
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f]+$"
OPERATION_PATTERN = _OPERATION.pattern

ToolId = Annotated[str, Field(min_length=1, max_length=255, pattern=TOOL_ID_PATTERN)]
EndpointUrl = Annotated[
    str,
    AfterValidator(_endpoint_url),
    Field(json_schema_extra={"maxLength": ENDPOINT_MAX_LENGTH, "pattern": URL_PATTERN}),
]
HealthUrl = Annotated[
    str,
    AfterValidator(_health_url),
    Field(json_schema_extra={"maxLength": HEALTH_ENDPOINT_MAX_LENGTH, "pattern": URL_PATTERN}),
]
Endpoints = Annotated[
    dict[str, EndpointUrl],
    AfterValidator(_check_endpoints),
    Field(
        json_schema_extra={
            "maxProperties": MAX_ENDPOINTS,
            "propertyNames": {"pattern": OPERATION_PATTERN},
        }
    ),
]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]

# Each registration field's description, shared by the submitted and stored models.
TOOL_ID_DESCRIPTION = (
    "The tool's unique id: 1-255 letters, digits and . _ : @ - (starting with a letter or digit)."
)
NODE_TYPE_DESCRIPTION = "The ONEX node type (case-insensitive on input, stored lower-case)."
_SIZES = (
    f"a JSON object of at most {DEFAULT_MAX_JSON_BYTES} bytes (TOOLREG_MAX_JSON_BYTES) "
    f"nested at most {DEFAULT_MAX_DEPTH} levels; capabilities, endpoints and metadata "
    f"together at most {DEFAULT_MAX_REGISTRATION_BYTES} bytes (TOOLREG_MAX_REGISTRATION_BYTES)"
)
CAPABILITIES_DESCRIPTION = (
    "What the tool can do: its `operations` list is what discovery routes by; " + _SIZES + "."
)
ENDPOINTS_DESCRIPTION = (
    f"Operation name to the absolute http(s) URL that serves it: at most {MAX_ENDPOINTS} "
    "entries, names of 1-128 letters, digits and . _ : @ / - (starting with a letter or "
    f"digit), URLs of at most {ENDPOINT_MAX_LENGTH} characters naming a host."
)
METADATA_DESCRIPTION = "Free-form data for the tool's owners (version, team...): " + _SIZES + "."
HEALTH_ENDPOINT_DESCRIPTION = (
    "The absolute http(s) URL the registry's active health checks call, at most "
    f"{HEALTH_ENDPOINT_MAX_LENGTH} characters, naming a host; null: no active checks."
)
