"""One HTTP call to a tool: what a failure means, and how much of the answer is read.

A failure either proves the tool never got the whole request (connection
refused, connect timeout, an error while writing the request: another tool
may safely be tried, and the tool is ejected) or leaves it unknown whether the
tool acted on it (a reset or close while waiting for the answer, a read
timeout, a 5xx: retried only for idempotent operations). A tool may read a
request, act on it, then crash: a reset after the request was written is
unknown, not "never sent", though it still ejects the tool. A 4xx is the
caller's problem and never retried; neither is an answer larger than the cap
(the tool acted, and would answer as much again).

httpcore's HTTP/1.1 connection swallows an error while writing the request
and goes on to read the answer, so a reset during the write mostly surfaces
as a ReadError, and is then (safely) unknown.
"""

from __future__ import annotations

import enum
from typing import Any, NoReturn

import httpx
import orjson

from omninode_bridge.errors import ToolCallError, ToolResponseTooLargeError

__all__ = [
    "Failure",
    "classify",
    "decode_response",
    "ejects",
    "excerpt",
    "read_answer",
    "transport_error",
]

EXCERPT_CHARS = 200
EXCERPT_BYTES = EXCERPT_CHARS * 4  # UTF-8 takes at most 4 bytes a character


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
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.WriteError):
        # The request was not written whole: the tool cannot have acted on it.
        return Failure.NOT_SENT
    if isinstance(exc, httpx.PoolTimeout):
        return Failure.FINAL  # our own connection pool is exhausted: not the tool's doing
    if isinstance(exc, httpx.TransportError):
        # Written, then no (whole) answer, even on a reset: the tool may have
        # read the request and acted before its connection died.
        return Failure.UNKNOWN
    return Failure.FINAL


def ejects(exc: httpx.HTTPError) -> bool:
    """Whether the failure shows the tool is down, whatever it did with the request.

    True when it was not reached, or its connection was reset (a crashed or
    killed tool); a read timeout (a slow tool) or a plain close does not eject.
    """
    if classify(exc) is Failure.NOT_SENT:
        return True
    return isinstance(exc, httpx.ReadError | httpx.WriteError) and _reset(exc)


def excerpt(content: bytes) -> str:
    """The start of a body, as text, for error messages."""
    text = content[:EXCERPT_BYTES].decode("utf-8", errors="replace")
    return text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "")


def transport_error(tool_id: str, endpoint: str, exc: httpx.HTTPError) -> ToolCallError:
    """A ToolCallError describing a call that got no answer."""
    if classify(exc) is Failure.NOT_SENT:
        message = f"could not be reached ({_describe(exc)})"
    else:
        message = f"gave no answer ({_describe(exc)})"
    return ToolCallError(tool_id, endpoint, message)


async def read_answer(
    tool_id: str, endpoint: str, response: httpx.Response, limit: int
) -> dict[str, Any]:
    """The JSON object of a streamed answer, reading no more than ``limit`` bytes of it.

    A 2xx answer larger than ``limit`` raises ToolResponseTooLargeError, from
    its Content-Length before reading any of it, or as soon as the body
    passes ``limit``; any other status is read only as far as the excerpt
    its ToolCallError quotes. Closing ``response`` then closes a connection
    whose answer was not read to the end (``client.stream`` does that on
    exit). Transport errors while reading propagate as httpx errors.
    """
    status = response.status_code
    ok = 200 <= status < 300
    declared = _content_length(response)
    if ok and declared is not None and declared > limit:
        raise ToolResponseTooLargeError(tool_id, endpoint, limit, status, declared)
    wanted = limit if ok else EXCERPT_BYTES
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():  # decoded: the cap bounds memory
        chunks.append(chunk)
        size += len(chunk)
        if size > wanted:
            if ok:
                raise ToolResponseTooLargeError(tool_id, endpoint, limit, status, declared)
            break  # enough for the excerpt
    return decode_response(tool_id, endpoint, response, b"".join(chunks))


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # h11 rejects a malformed one before this; the stream's count still holds


def decode_response(
    tool_id: str, endpoint: str, response: httpx.Response, content: bytes
) -> dict[str, Any]:
    """The JSON object in ``content``, the body of ``response``; ToolCallError otherwise.

    Any status but 2xx is an error, a redirect too: a POST is not followed to
    another URL.
    """
    status = response.status_code
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
