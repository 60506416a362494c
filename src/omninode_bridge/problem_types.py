"""The one table between the error tree and HTTP: used by the server, and by the client backwards.

The server answers an error of the tree with its row's status, title and
problem ``type`` (``https://omninode.dev/problems/<slug>``) plus the row's
extension members (a tool_id, the ids that clashed, discovery's
explanation...). :class:`~omninode_bridge.client.RegistryClient` reads the
``type`` of a problem document and raises the same error again, built from
those members, so that a caller of the client sees what a caller of the
repository sees. No FastAPI here: the client imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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
    TooManyStreamsError,
    ValidationFailedError,
)

__all__ = ["PROBLEM_BASE", "PROBLEM_TYPES", "ProblemType", "error_from_problem", "problem_type_of"]

PROBLEM_BASE = "https://omninode.dev/problems/"
Members = dict[str, Any]


def _no_members(_: Any) -> Members:
    return {}


def _plain(detail: str, _: Mapping[str, Any]) -> OmniNodeBridgeError:
    return OmniNodeBridgeError(detail)


@dataclass(frozen=True, slots=True)
class ProblemType:
    """One row: the error, its HTTP status and title, what the answer adds, how to rebuild it."""

    error: type[OmniNodeBridgeError]
    status: int
    title: str
    members: Callable[[Any], Members] = _no_members
    rebuild: Callable[[str, Mapping[str, Any]], OmniNodeBridgeError] | None = None

    @property
    def slug(self) -> str:
        return self.title.lower().replace(" ", "-")

    @property
    def uri(self) -> str:
        return PROBLEM_BASE + self.slug

    def build(self, detail: str, problem: Mapping[str, Any]) -> OmniNodeBridgeError:
        """The error again, from a problem document of this type."""
        if self.rebuild is not None:
            return self.rebuild(detail, problem)
        return self.error(detail)


def _explanation(exc: NoRoutableToolError) -> Members:
    members: Members = {"operation": exc.operation}
    if exc.explanation is not None:
        members.update({k: v for k, v in exc.explanation.items() if k != "summary"})
    return members


def _no_routable(detail: str, p: Mapping[str, Any]) -> OmniNodeBridgeError:
    explanation = {k: p[k] for k in ("declared", "routable", "tools") if k in p}
    return NoRoutableToolError(str(p.get("operation", "")), detail, explanation=explanation)


def _validation(detail: str, p: Mapping[str, Any]) -> OmniNodeBridgeError:
    errors = [(str(e["field"]), str(e["message"])) for e in p.get("errors") or []]
    return ValidationFailedError(errors or [("body", detail)])


PROBLEM_TYPES: tuple[ProblemType, ...] = (
    ProblemType(ValidationFailedError, 422, "Validation failed", rebuild=_validation),
    ProblemType(
        ToolAlreadyRegisteredError,
        409,
        "Tool already registered",
        members=lambda e: {"tool_ids": e.tool_ids},
        rebuild=lambda d, p: ToolAlreadyRegisteredError([str(t) for t in p.get("tool_ids", [])]),
    ),
    ProblemType(
        ToolOwnedBySourceError,
        409,
        "Tool owned by a source",
        members=lambda e: {"tool_id": e.tool_id, "owner": e.owner},
        rebuild=lambda d, p: ToolOwnedBySourceError(str(p.get("tool_id")), str(p.get("owner"))),
    ),
    ProblemType(
        ToolNotFoundError,
        404,
        "Tool not found",
        members=lambda e: {"tool_id": e.tool_id},
        rebuild=lambda d, p: ToolNotFoundError(str(p.get("tool_id"))),
    ),
    ProblemType(
        NoRoutableToolError, 404, "No routable tool", members=_explanation, rebuild=_no_routable
    ),
    ProblemType(AuthenticationError, 401, "Unauthorized"),
    ProblemType(PermissionDeniedError, 403, "Forbidden"),
    ProblemType(ResyncRequiredError, 410, "Resync required"),
    ProblemType(
        QueryTimeoutError,
        422,
        "Query too expensive",
        members=lambda e: {"limit_seconds": e.limit_seconds},
        rebuild=lambda d, p: QueryTimeoutError(float(p.get("limit_seconds", 0))),
    ),
    ProblemType(
        TooManyStreamsError,
        429,
        "Too many streams",
        members=lambda e: {"limit": e.limit, "setting": e.setting},
        rebuild=lambda d, p: TooManyStreamsError(int(p.get("limit", 0)), str(p.get("setting"))),
    ),
    ProblemType(RegistryOverloadedError, 503, "Registry overloaded"),
    ProblemType(RegistryUnavailableError, 503, "Registry unavailable"),
    ProblemType(MigrationError, 503, "Schema not ready"),
    ProblemType(ConfigurationError, 503, "Registry misconfigured"),
    # Calling a tool (MCP call_tool): it failed, or has no endpoint for the operation.
    ProblemType(DiscoveryError, 502, "Tool call failed"),
)
_BY_SLUG = {row.slug: row for row in PROBLEM_TYPES}


def problem_type_of(exc: OmniNodeBridgeError) -> ProblemType | None:
    """The row of ``exc`` (the first whose error it is an instance of); ``None``: a 500."""
    for row in PROBLEM_TYPES:
        if isinstance(exc, row.error):
            return row
    return None


def error_from_problem(status: int, problem: Mapping[str, Any]) -> OmniNodeBridgeError:
    """The error a problem document stands for (by its ``type``; else by status).

    Unknown types: 5xx is RegistryUnavailableError (retry later), the rest the root error.
    """
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    kind = str(problem.get("type", "")).removeprefix(PROBLEM_BASE)
    row = _BY_SLUG.get(kind)
    if row is not None and row.status == status:
        return row.build(detail, problem)
    if status in (400, 413, 415):
        return _validation(detail, problem)
    if status >= 500:
        return RegistryUnavailableError(f"registry answered {status}: {detail}")
    return _plain(f"registry answered {status}: {detail}", problem)
