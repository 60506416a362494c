"""One HTTP call to a tool: what a failure means, and what the answer holds.

A failure either proves the request never reached the tool (connection
refused or reset, connect timeout: another tool may safely be tried, and the
tool is ejected) or leaves it unknown whether the tool acted on it (read
timeout, connection closed before an answer, 5xx: retried only for idempotent
operations). A 4xx is the caller's problem and never retried.
"""

from __future__ import annotations

import enum
from typing import Any, NoReturn

import httpx
import orjson

from omninode_bridge.errors import ToolCallError

__all__ = ["Failure", "classify", "decode_response", "excerpt", "transport_error"]

EXCERPT_CHARS = 200


class Failure(enum.Enum):
    """What a failed attempt allows the router to do next."""

    NOT_SENT = "not sent"  # never reached the tool: try the next one, eject this one
    UNKNOWN = "unknown"  # the tool may have acted on it: retry only if idempotent
    FINAL = "final"  # retrying cannot help (4xx, a local problem, a bad answer)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes (httpx wraps httpcore, which wraps anyio and OSError)."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def _reset(exc: BaseException) -> bool:
    return any(isinstance(e, ConnectionResetError | BrokenPipeError) for e in _chain(exc))


def _describe(exc: BaseException) -> str:
    """The exception's type and the most specific message along its causes."""
    messages = [str(e) for e in _chain(exc) if str(e)]
    root = _chain(exc)[-1]
    detail = messages[-1] if messages else "no detail"
    if root is not exc:
        return f"{type(exc).__name__}: {type(root).__name__}: {detail}"
    return f"{type(exc).__name__}: {detail}"


def classify(exc: httpx.HTTPError) -> Failure:
    """The kind of a transport failure (see the module docstring)."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return Failure.NOT_SENT
    if isinstance(exc, httpx.ReadError | httpx.WriteError) and _reset(exc):
        # Reset: the tool's socket was closed with our request unread.
        return Failure.NOT_SENT
    if isinstance(exc, httpx.PoolTimeout):
        return Failure.FINAL  # our own connection pool is exhausted: not the tool's doing
    if isinstance(exc, httpx.TransportError):
        return Failure.UNKNOWN
    return Failure.FINAL


def excerpt(content: bytes) -> str:
    """The start of a body, as text, for error messages."""
    text = content[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    return text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "")


def transport_error(tool_id: str, endpoint: str, exc: httpx.HTTPError) -> ToolCallError:
    """A ToolCallError describing a call that got no answer."""
    if classify(exc) is Failure.NOT_SENT:
        message = f"could not be reached ({_describe(exc)})"
    else:
        message = f"gave no answer ({_describe(exc)})"
    return ToolCallError(tool_id, endpoint, message)


def decode_response(tool_id: str, endpoint: str, response: httpx.Response) -> dict[str, Any]:
    """The JSON object a tool answered; ToolCallError for any other status or body.

    A redirect is an error too: a POST is not followed to another URL.
    """
    status = response.status_code
    content = response.content
    if not 200 <= status < 300:
        what = "HTTP error" if status >= 400 else "unexpected status (redirects are not followed)"
        _raise(tool_id, endpoint, what, status, content)
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        kind = response.headers.get("content-type") or "no content type"
        _raise(tool_id, endpoint, f"the body is not JSON ({kind})", status, content)
    if not isinstance(value, dict):
        _raise(
            tool_id,
            endpoint,
            f"the JSON is not an object ({type(value).__name__})",
            status,
            content,
        )
    return value


def _raise(tool_id: str, endpoint: str, what: str, status: int, content: bytes) -> NoReturn:
    raise ToolCallError(tool_id, endpoint, what, status=status, body_excerpt=excerpt(content))
