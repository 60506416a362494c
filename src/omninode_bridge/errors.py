"""The one exception tree of omninode_bridge.

Every error this package raises on purpose derives from
:class:`OmniNodeBridgeError`. Driver errors are translated at the database
boundary (``services.postgres_client``) with the original kept as
``__cause__``; nothing is swallowed into ``None``, ``False`` or ``[]``.

::

    OmniNodeBridgeError
    ├── ConfigurationError            a setting is missing or malformed (names the variable)
    ├── EmbeddedServerError           the embedded PostgreSQL could not start or stop
    ├── RegistryUnavailableError      the database cannot be reached (refused, lost, timed out)
    │   ├── RegistryOverloadedError   every connection (or query slot) stayed busy too long
    │   └── FeedInterruptedError      this process stopped following the change feed (streams end)
    ├── QueryTimeoutError             a client-shaped query ran past TOOLREG_QUERY_TIMEOUT_SECONDS
    ├── TooManyStreamsError           a client holds as many open streams as it may (HTTP 429)
    ├── NotConnectedError             a PostgresClient was used before connect() / after close()
    ├── DatabaseError                 any other database failure (original kept as __cause__)
    │   └── MigrationError            the schema is missing, behind, or a migration failed
    ├── ResyncRequiredError           a change-feed cursor older than the feed's retention
    ├── SubscriberLagError            a change-feed subscriber fell too far behind; it resumes
    ├── LeadershipLostError           a fenced liveness write found its lease gone: nothing written
    ├── SourceError                   an auto-discovery source (etcd, Consul)
    │   ├── SourceUnavailableError    the source cannot be reached; retried with backoff
    │   └── SourceHistoryLostError    the source compacted the history a bridge needed; it resyncs
    ├── RegistrationError             a problem with one tool's registration
    │   ├── ValidationFailedError     input rejected before any write (names the field)
    │   ├── ToolAlreadyRegisteredError   a tool_id that is already taken
    │   ├── ToolOwnedBySourceError    a write over a tool an auto-discovery source owns (HTTP 409)
    │   └── ToolNotFoundError         a tool_id that is not registered (where absence is an error)
    ├── AuthError                     a request's credentials
    │   ├── AuthenticationError       no token, or an unknown or revoked one (HTTP 401)
    │   └── PermissionDeniedError     a valid token without the right (HTTP 403)
    └── DiscoveryError                finding or calling a tool (also a RuntimeError)
        ├── IndexUnavailableError     the discovery index cannot load, or is stale past its grace
        │                             (also a RegistryUnavailableError)
        ├── NoRoutableToolError       no live tool offers the operation
        ├── MissingEndpointError      the chosen tool has no endpoint for the operation
        └── ToolCallError             the tool failed: unreachable, 4xx/5xx, or not JSON
            └── ToolResponseTooLargeError  the answer passed TOOLREG_MAX_RESPONSE_BYTES (final)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthError",
    "AuthenticationError",
    "ConfigurationError",
    "DatabaseError",
    "DiscoveryError",
    "EmbeddedServerError",
    "FeedInterruptedError",
    "IndexUnavailableError",
    "LeadershipLostError",
    "MigrationError",
    "MissingEndpointError",
    "NoRoutableToolError",
    "NotConnectedError",
    "OmniNodeBridgeError",
    "PermissionDeniedError",
    "QueryTimeoutError",
    "RegistrationError",
    "RegistryOverloadedError",
    "RegistryUnavailableError",
    "ResyncRequiredError",
    "SourceError",
    "SourceHistoryLostError",
    "SourceUnavailableError",
    "SubscriberLagError",
    "TooManyStreamsError",
    "ToolAlreadyRegisteredError",
    "ToolCallError",
    "ToolNotFoundError",
    "ToolOwnedBySourceError",
    "ToolResponseTooLargeError",
    "ValidationFailedError",
]


class OmniNodeBridgeError(Exception):
    """Root of every error raised by omninode_bridge."""


class ConfigurationError(OmniNodeBridgeError):
    """A setting is missing or malformed; the message names the variable."""


class EmbeddedServerError(OmniNodeBridgeError):
    """The embedded PostgreSQL server could not be started, reached or stopped."""


class RegistryUnavailableError(OmniNodeBridgeError):
    """The database cannot be reached: refused, lost mid-query, shutting down or timed out.

    Callers may retry later; nothing about the registry's content can be
    concluded from this error.
    """


class RegistryOverloadedError(RegistryUnavailableError):
    """Every pooled connection, or every slot for client-shaped queries, stayed busy too long.

    The database is fine; this process has more work than its bounds allow.
    Retry shortly.
    """


class QueryTimeoutError(OmniNodeBridgeError):
    """A query shaped by the caller (a search, a filter) ran past its time limit and was
    cancelled. Retrying the same query will not help: make it cheaper."""

    def __init__(self, limit_seconds: float, what: str = "the query") -> None:
        self.limit_seconds = limit_seconds
        super().__init__(
            f"{what} ran longer than {limit_seconds:g}s (TOOLREG_QUERY_TIMEOUT_SECONDS) and "
            "was cancelled; make it cheaper (a simpler `where`, a capabilities or node_type "
            "filter, a smaller limit)"
        )


class TooManyStreamsError(OmniNodeBridgeError):
    """A client already holds as many open streams as one server allows it: retry once one
    of them has ended (the answer carries ``Retry-After``).

    Not a :class:`RegistryOverloadedError`: the registry is fine, this one client is at its
    own bound. ``limit`` is the bound; ``setting`` the variable that sets it.
    """

    def __init__(self, limit: int, setting: str) -> None:
        self.limit = limit
        self.setting = setting
        super().__init__(
            f"this client already has as many streams open on this server as it may ({limit}, "
            f"{setting}); close one, or retry once one has ended"
        )


class NotConnectedError(OmniNodeBridgeError):
    """A PostgresClient was used before ``connect()`` or after ``close()``."""


class DatabaseError(OmniNodeBridgeError):
    """A database failure that is neither unavailability nor a known conflict."""


class MigrationError(DatabaseError):
    """The schema is missing or behind, or a migration could not be applied."""


class ResyncRequiredError(OmniNodeBridgeError):
    """A change-feed cursor points before events that were pruned: re-read, then follow."""


class FeedInterruptedError(RegistryUnavailableError):
    """This process stopped following the change feed (the database was lost).

    Open streams end with it; clients resume from their last cursor and lose nothing.
    """


class SubscriberLagError(OmniNodeBridgeError):
    """A change-feed subscriber fell behind its buffer; it resumes from its last cursor."""


class LeadershipLostError(OmniNodeBridgeError):
    """A fenced write found that its leader no longer holds the lease: nothing was written."""


class SourceError(OmniNodeBridgeError):
    """An auto-discovery source failed (see the two kinds below)."""


class SourceUnavailableError(SourceError):
    """The source cannot be reached or answered with an error: retry later.

    Nothing about the announcements can be concluded from this error; in
    particular it never means that they are gone.
    """


class SourceHistoryLostError(SourceError):
    """The changes after the requested revision are no longer kept (etcd compaction, a
    Consul index that went back, a source with no history at all).

    ``oldest_revision`` is the first revision still available (0 if unknown).
    The remedy is a fresh snapshot.
    """

    def __init__(self, message: str, oldest_revision: int = 0) -> None:
        self.oldest_revision = oldest_revision
        super().__init__(message)


class RegistrationError(OmniNodeBridgeError):
    """A problem with a tool's registration."""


class ValidationFailedError(RegistrationError, ValueError):
    """Input was rejected before any write.

    ``errors`` holds one ``(field, message)`` pair per offending field.
    """

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        detail = "; ".join(f"{field}: {message}" for field, message in errors)
        super().__init__(f"invalid input: {detail}")


class ToolAlreadyRegisteredError(RegistrationError):
    """A ``tool_id`` that is already registered; ``tool_ids`` lists every one that clashed."""

    def __init__(self, tool_ids: list[str]) -> None:
        self.tool_ids = tool_ids
        names = ", ".join(repr(t) for t in tool_ids)
        noun = "tool_id" if len(tool_ids) == 1 else "tool_ids"
        super().__init__(f"{noun} {names} already registered")


class ToolOwnedBySourceError(RegistrationError):
    """A write over a tool that an auto-discovery source owns: its content comes from there.

    ``owner`` names the source (``source:<name>``). An admin may take the tool
    over explicitly (``?force=true``); the source then leaves it alone.
    """

    def __init__(self, tool_id: str, owner: str) -> None:
        self.tool_id = tool_id
        self.owner = owner
        super().__init__(
            f"tool {tool_id!r} is owned by the auto-discovery source "
            f"{owner.removeprefix('source:')!r}, whose content would replace this write; "
            "change it there, or take the tool over with ?force=true"
        )


class ToolNotFoundError(RegistrationError, LookupError):
    """A ``tool_id`` that is not registered, where absence is an error rather than ``None``."""

    def __init__(self, tool_id: str) -> None:
        self.tool_id = tool_id
        super().__init__(f"tool_id {tool_id!r} is not registered")


class AuthError(OmniNodeBridgeError):
    """A problem with a request's credentials."""


class AuthenticationError(AuthError):
    """No token, or one that is unknown or revoked."""


class PermissionDeniedError(AuthError):
    """A valid token that lacks the scope or ownership the action needs."""


class DiscoveryError(OmniNodeBridgeError, RuntimeError):
    """Finding or calling a tool failed; a RuntimeError too, which the guide's callers catch."""


class IndexUnavailableError(DiscoveryError, RegistryUnavailableError):
    """The discovery index could not be loaded, or has been stale for longer than the grace.

    Both a :class:`DiscoveryError` (so a ``RuntimeError``, as the guide's
    callers expect) and a :class:`RegistryUnavailableError`; the database
    error is kept as ``__cause__``.
    """


class NoRoutableToolError(DiscoveryError, LookupError):
    """No live, healthy tool offers the operation.

    ``explanation`` (when known) says why, as JSON: ``declared`` and
    ``routable`` counts and, for the first few tools, a ``reason``
    (``no_endpoint``, ``stale``, ``critical``, ``excluded``, ``ejected``) with
    ``since``/``until`` times; the HTTP API's 404 carries the same members.
    """

    def __init__(
        self, operation: str, detail: str = "", *, explanation: dict[str, Any] | None = None
    ) -> None:
        self.operation = operation
        self.explanation = explanation
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"No tool found for operation: {operation}{suffix}")


class MissingEndpointError(DiscoveryError):
    """The chosen tool declares the operation but has no endpoint for it."""

    def __init__(self, tool_id: str, operation: str) -> None:
        self.tool_id = tool_id
        self.operation = operation
        super().__init__(f"Tool {tool_id} does not have endpoint for: {operation}")


class ToolCallError(DiscoveryError):
    """Calling a tool failed: it could not be reached, answered 4xx/5xx, or sent non-JSON.

    ``status`` is the HTTP status (``None`` when no answer came back);
    ``body_excerpt`` holds the start of the answer.
    """

    def __init__(
        self,
        tool_id: str,
        endpoint: str,
        message: str,
        status: int | None = None,
        body_excerpt: str = "",
    ) -> None:
        self.tool_id = tool_id
        self.endpoint = endpoint
        self.status = status
        self.body_excerpt = body_excerpt
        where = f"tool {tool_id} at {endpoint}"
        code = f" answered {status}" if status is not None else ""
        excerpt = f": {body_excerpt!r}" if body_excerpt else ""
        super().__init__(f"{where}{code}: {message}{excerpt}")


class ToolResponseTooLargeError(ToolCallError):
    """A tool answered with more than ``TOOLREG_MAX_RESPONSE_BYTES``; the answer was not read whole.

    Final: the tool acted on the request, so it is never tried on another
    tool. ``limit`` is the cap in bytes; ``declared`` the answer's
    Content-Length (``None`` when it sent none, e.g. chunked, and was cut
    off once past the cap).
    """

    def __init__(
        self, tool_id: str, endpoint: str, limit: int, status: int, declared: int | None = None
    ) -> None:
        self.limit = limit
        self.declared = declared
        size = f" ({declared} bytes)" if declared is not None else ""
        super().__init__(
            tool_id,
            endpoint,
            f"the response{size} is larger than the limit of {limit} bytes "
            "(TOOLREG_MAX_RESPONSE_BYTES) and was not read whole",
            status=status,
        )
