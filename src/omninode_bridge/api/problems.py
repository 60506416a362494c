"""RFC 9457 problem details: every error the API returns is ``application/problem+json``.

The handlers map the one exception tree onto HTTP statuses; anything
unexpected is logged with its traceback and answered as a bare 500 that leaks
nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from omninode_bridge.errors import (
    AuthenticationError,
    ConfigurationError,
    DiscoveryError,
    MigrationError,
    NoRoutableToolError,
    OmniNodeBridgeError,
    PermissionDeniedError,
    QueryTimeoutError,
    RegistryOverloadedError,
    RegistryUnavailableError,
    ResyncRequiredError,
    ToolAlreadyRegisteredError,
    ToolNotFoundError,
    ToolOwnedBySourceError,
    ValidationFailedError,
)

__all__ = [
    "FieldError",
    "Problem",
    "install_problem_handlers",
    "problem_response",
    "public_problem",
]

logger = logging.getLogger(__name__)

PROBLEM_TYPE = "https://omninode.dev/problems/"
RETRY_AFTER_SECONDS = 5


class FieldError(BaseModel):
    """One offending field: its dotted path and what is wrong with it."""

    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    slug: str | None = None,
    instance: str | None = None,
    errors: list[tuple[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """A problem+json response; ``extra`` adds extension members (RFC 9457 section 3.2)."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + (slug or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = [{"field": f, "message": m} for f, m in errors]
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts) or "body"


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = "; ".join(str(e.get("ctx", {}).get("error", e.get("msg"))) for e in errors)
        return problem_response(400, "Malformed JSON", detail, instance=request.url.path)
    fields = [
        (_loc(e.get("loc", ())), str(e.get("msg", "invalid")).removeprefix("Value error, "))
        for e in errors
    ]
    return problem_response(
        422,
        "Validation failed",
        "; ".join(f"{f}: {m}" for f, m in fields),
        slug="validation-failed",
        instance=request.url.path,
        errors=fields,
    )


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    titles = {404: "Not found", 405: "Method not allowed", 413: "Request body too large"}
    title = titles.get(exc.status_code, "HTTP error")
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route matches {request.method} {request.url.path}"
    return problem_response(
        exc.status_code, title, detail, instance=request.url.path, headers=exc.headers
    )


_STATUS: list[tuple[type[OmniNodeBridgeError], int, str]] = [
    (ValidationFailedError, 422, "Validation failed"),
    (ToolAlreadyRegisteredError, 409, "Tool already registered"),
    (ToolOwnedBySourceError, 409, "Tool owned by a source"),
    (ToolNotFoundError, 404, "Tool not found"),
    (NoRoutableToolError, 404, "No routable tool"),
    (AuthenticationError, 401, "Unauthorized"),
    (PermissionDeniedError, 403, "Forbidden"),
    (ResyncRequiredError, 410, "Resync required"),
    (QueryTimeoutError, 422, "Query too expensive"),
    (RegistryOverloadedError, 503, "Registry overloaded"),
    (RegistryUnavailableError, 503, "Registry unavailable"),
    (MigrationError, 503, "Schema not ready"),
    (ConfigurationError, 503, "Registry misconfigured"),
    # Calling a tool (MCP route_request): it failed, or has no endpoint for the operation.
    (DiscoveryError, 502, "Tool call failed"),
]


_PUBLIC_503: dict[type[OmniNodeBridgeError], str] = {
    RegistryUnavailableError: "the registry's database is unavailable",
    MigrationError: "the registry's database schema is not ready (see the server log)",
    ConfigurationError: "the registry is misconfigured (see the server log)",
}


def public_problem(exc: OmniNodeBridgeError) -> tuple[int, str, str] | None:
    """``(status, title, detail)`` the API answers ``exc`` with; ``None`` when unmapped (500).

    Every face that reports errors to clients (problem+json here, MCP tool errors) uses it.
    """
    for cls, status, title in _STATUS:
        if isinstance(exc, cls):
            detail = str(exc)
            if status == 503 and not isinstance(exc, RegistryOverloadedError):
                # The full message names the database (a host, a socket path):
                # it goes to the log, not to an unauthenticated client.
                detail = f"{_PUBLIC_503.get(cls, title)}; retry in {RETRY_AFTER_SECONDS}s"
            return status, title, detail
    return None


async def _domain(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OmniNodeBridgeError)
    mapped = public_problem(exc)
    if mapped is None:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        return problem_response(
            500, "Internal error", "the registry failed; see its log", instance=request.url.path
        )
    status, title, detail = mapped
    headers: dict[str, str] = {}
    errors = exc.errors if isinstance(exc, ValidationFailedError) else None
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="toolreg"'
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        logger.warning("%s %s: %s", request.method, request.url.path, exc)
    extra = None
    if isinstance(exc, NoRoutableToolError) and exc.explanation is not None:
        extra = {k: v for k, v in exc.explanation.items() if k != "summary"}
    if isinstance(exc, ToolOwnedBySourceError):
        extra = {"tool_id": exc.tool_id, "owner": exc.owner}
    return problem_response(
        status,
        title,
        detail,
        instance=request.url.path,
        errors=errors,
        headers=headers,
        extra=extra,
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.error("%s %s crashed", request.method, request.url.path, exc_info=exc)
    return problem_response(
        500, "Internal error", "the registry failed; see its log", instance=request.url.path
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error of ``app`` through problem+json."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(OmniNodeBridgeError, _domain)
    app.add_exception_handler(Exception, _unexpected)
