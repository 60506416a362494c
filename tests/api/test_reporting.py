"""answer_then_report: the status the app answered with (500 if none) and the duration."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.types import Message, Receive, Scope, Send

from omninode_bridge.api.reporting import answer_then_report

SCOPE: Scope = {"type": "http", "method": "GET", "path": "/"}


def _to(reports: list[tuple[Scope, int, float]]) -> Callable[[Scope, int, float], None]:
    def report(scope: Scope, status: int, seconds: float) -> None:
        reports.append((scope, status, seconds))

    return report


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def test_reports_the_status_the_app_answered_with_after_passing_every_message_on() -> None:
    sent: list[Message] = []
    reports: list[tuple[Scope, int, float]] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"gone"})
        assert not reports  # not before the app returns

    await answer_then_report(app, SCOPE, _receive, send, _to(reports))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    [(scope, status, seconds)] = reports
    assert (scope, status) == (SCOPE, 404)
    assert seconds >= 0


async def test_an_app_that_fails_before_answering_is_reported_as_500_then_raises() -> None:
    reports: list[tuple[Scope, int, float]] = []

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("broken")

    with pytest.raises(RuntimeError, match="broken"):
        await answer_then_report(app, SCOPE, _receive, send, _to(reports))
    assert [status for _, status, _ in reports] == [500]
