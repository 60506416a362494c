"""Shared route pieces: the state dependency and the documented error responses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Response

from omninode_bridge.api.problems import Problem
from omninode_bridge.api.state import AppState, get_state

__all__ = ["State", "json_response", "problems"]

State = Annotated[AppState, Depends(get_state)]

_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing or invalid token",
    403: "Token lacks the scope or does not own the tool",
    404: "Not found",
    409: "tool_id already registered",
    410: "Cursor older than the change feed's retention",
    413: "Request body too large",
    415: "The body is not JSON: send content-type: application/json",
    422: "Validation failed; `errors` names every offending field",
    503: "Database unavailable; retry after `Retry-After` seconds",
}


def json_response(body: bytes) -> Response:
    """A 200 whose body is JSON built elsewhere (by PostgreSQL), passed through untouched."""
    return Response(body, media_type="application/json")


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these problem+json statuses (plus 503, and 415
    wherever a body is taken, i.e. with 413)."""
    if 413 in codes:
        codes = (*codes, 415)
    return {
        code: {
            "model": Problem,
            "description": _DESCRIPTIONS[code],
            "content": {"application/problem+json": {}},
        }
        for code in sorted({*codes, 503})
    }
