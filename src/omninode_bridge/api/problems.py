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
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from omninode_bridge.errors import (
    ConfigurationError,
    MigrationError,
    OmniNodeBridgeError,
    RegistryOverloadedError,
    RegistryUnavailableError,
    ValidationFailedError,
)
from omninode_bridge.problem_types import PROBLEM_BASE, problem_type_of

__all__ = [
    "FieldError",
    "Problem",
    "install_problem_handlers",
    "problem_response",
    "public_problem",
]

logger = logging.getLogger(__name__)

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

PROBLEM_TYPE = PROBLEM_BASE
RETRY_AFTER_SECONDS = 5


class FieldError(BaseModel):
    """One offending field: its dotted path and what is wrong with it."""

    field: str = Field(description="Dotted path of the field (`endpoints.stamp`, `body`...).")
    message: str = Field(description="What is wrong with it.")


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(description="A URI naming the kind of problem.")
    title: str = Field(description="The kind of problem, in words (the same for every instance).")
    status: int = Field(description="The HTTP status.")
    detail: str | None = Field(default=None, description="This occurrence, in words.")
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[FieldError] | None = Field(default=None, description="422: every offending field.")


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


def _json_content_type(value: str) -> bool:
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    body_errors = [e for e in errors if tuple(e.get("loc", ()))[:1] == ("body",)]
    content_type = request.headers.get("content-type", "")
    if body_errors and not _json_content_type(content_type):
        sent = content_type or "no content-type"
        return problem_response(
            415,
            "Unsupported media type",
            f"the body must be JSON: send content-type: application/json (got {sent})",
            instance=request.url.path,
        )
    invalid = [e for e in errors if e.get("type") == "json_invalid"]
    if invalid:
        return problem_response(
            400,
            "Malformed JSON",
            "; ".join([await _json_position(request, e) for e in invalid]),
            instance=request.url.path,
        )
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


async def _json_position(request: Request, error: Mapping[str, Any]) -> str:
    """The decoder's complaint with the line and column where it stopped."""
    reason = str(error.get("ctx", {}).get("error", error.get("msg")))
    loc = tuple(error.get("loc", ()))
    offset = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    if offset is None:
        return reason
    body = await request.body()
    line = body.count(b"\n", 0, offset) + 1
    column = offset - (body.rfind(b"\n", 0, offset) + 1) + 1
    return f"{reason} at line {line}, column {column} (character {offset})"


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    titles = {404: "Not found", 405: "Method not allowed", 413: "Request body too large"}
    title = titles.get(exc.status_code, "HTTP error")
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route matches {request.method} {request.url.path}"
    headers = exc.headers
    if exc.status_code == 405:
        given = (headers or {}).get("Allow") or (headers or {}).get("allow") or ""
        # Every route of the path (Starlette names only the first one's methods), unless a
        # route takes every method and answers 405 itself: then its own word.
        allowed = _allowed_methods(request)
        if given and allowed == ", ".join(_METHODS):
            allowed = given
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
        headers = {**(headers or {}), "Allow": allowed}
    return problem_response(
        exc.status_code, title, detail, instance=request.url.path, headers=headers
    )


def _allowed_methods(request: Request) -> str:
    """Every method some route of this path takes (Starlette names only the first route's):
    each candidate is matched as the router would match it."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        for route in request.app.router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                allowed.append(method)
                break
    return ", ".join(allowed)


_PUBLIC_503: dict[type[OmniNodeBridgeError], str] = {
    RegistryUnavailableError: "the registry's database is unavailable",
    MigrationError: "the registry's database schema is not ready (see the server log)",
    ConfigurationError: "the registry is misconfigured (see the server log)",
}


def public_problem(exc: OmniNodeBridgeError) -> tuple[int, str, str] | None:
    """``(status, title, detail)`` the API answers ``exc`` with; ``None`` when unmapped (500).

    Every face that reports errors to clients (problem+json here, MCP tool errors) uses it.
    """
    row = problem_type_of(exc)
    if row is None:
        return None
    detail = str(exc)
    if isinstance(exc, ValidationFailedError):
        detail = "; ".join(f"{field}: {message}" for field, message in exc.errors)
    if row.status == 503 and not isinstance(exc, RegistryOverloadedError):
        # The full message names the database (a host, a socket path):
        # it goes to the log, not to an unauthenticated client.
        detail = f"{_PUBLIC_503.get(row.error, row.title)}; retry in {RETRY_AFTER_SECONDS}s"
    return row.status, row.title, detail


async def _domain(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OmniNodeBridgeError)
    row = problem_type_of(exc)
    mapped = public_problem(exc)
    if row is None or mapped is None:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        return problem_response(
            500, "Internal error", "the registry failed; see its log", instance=request.url.path
        )
    status, title, detail = mapped
    headers: dict[str, str] = {}
    errors = exc.errors if isinstance(exc, ValidationFailedError) else None
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="toolreg"'
    if status in (429, 503):
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if status == 503:
        logger.warning("%s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        status,
        title,
        detail,
        slug=row.slug,
        instance=request.url.path,
        errors=errors,
        headers=headers,
        extra=row.members(exc),
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
