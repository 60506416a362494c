"""``GET /v1/changes``: the change feed as Server-Sent Events, resumable.

Each event carries ``id: <cursor>``; a client that reconnects with
``Last-Event-ID`` (or ``?since=<cursor>``) gets exactly the events after it.
With neither, the stream starts at the newest event (new ones only);
``?since=0-0`` replays everything still retained.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from omninode_bridge.api.auth import Reader, until_revoked
from omninode_bridge.api.routes.common import State, problems
from omninode_bridge.errors import OmniNodeBridgeError
from omninode_bridge.models import ChangeEvent
from omninode_bridge.services.cursors import FeedPosition
from omninode_bridge.services.feed_hub import FeedInterruptedError

router = APIRouter(prefix="/v1", tags=["changes"])

KEEPALIVE_SECONDS = 15.0


def _frame(event: ChangeEvent) -> bytes:
    data = orjson.dumps(event.model_dump(mode="json"))
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        event.cursor.encode(),
        event.kind.value.encode(),
        data,
    )


@router.get(
    "/changes",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "An endless event stream"},
        **problems(401, 410, 422, 503),
    },
)
async def changes(
    request: Request,
    state: State,
    principal: Reader,
    since: Annotated[
        str | None, Query(max_length=64, description="Resume after this cursor.")
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """Follow every create, update and delete as it commits.

    A stream ends (the client reconnects with ``Last-Event-ID`` and loses
    nothing) when the server shuts down, loses its database, or the client
    falls behind; a stream opened with a token ends within
    ``TOOLREG_STREAM_TOKEN_RECHECK_SECONDS`` of that token's revocation.
    """
    cursor = last_event_id or since
    FeedPosition.parse(cursor, field="since")  # a malformed cursor is a 422 before streaming
    if not state.hub.following:
        raise FeedInterruptedError("the registry is not following its change feed right now")
    if cursor:
        # A pruned cursor, or one ahead of the feed, is a 410 before streaming.
        await state.repository.feed.changes(cursor, 1)
    # Counted as an SSE stream cut off (the live view's own subscription is not one).
    events = state.hub.subscribe(cursor, on_dropped=state.metrics.sse_dropped.inc)

    async def stream() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        pending: asyncio.Task[ChangeEvent] | None = None
        stopping = asyncio.ensure_future(state.stopping.wait())
        revoked = asyncio.ensure_future(until_revoked(state, principal))
        try:
            while not await request.is_disconnected():
                if pending is None:
                    pending = asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait(
                    {pending, stopping, revoked},
                    timeout=KEEPALIVE_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if stopping in done:
                    return  # the server is shutting down; the client resumes elsewhere
                if revoked in done:
                    yield _error_frame("the token of this stream was revoked")
                    return
                if not done:
                    yield b": keepalive\n\n"
                    continue
                finished, pending = pending, None
                try:
                    event = finished.result()
                except StopAsyncIteration:
                    return
                except OmniNodeBridgeError as exc:
                    # The client reconnects with Last-Event-ID and loses nothing.
                    yield _error_frame(str(exc))
                    return
                yield _frame(event)
        finally:
            stopping.cancel()
            revoked.cancel()
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(
                    asyncio.CancelledError, StopAsyncIteration, OmniNodeBridgeError
                ):
                    await pending
            await events.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _error_frame(detail: str) -> bytes:
    return b"event: error\ndata: %s\n\n" % orjson.dumps({"detail": detail})
