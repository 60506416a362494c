"""The structured errors of the MCP tools: the hint a model reads for each way a call fails."""

from __future__ import annotations

import pytest

from omninode_bridge.api.mcp.outcomes import error_of
from omninode_bridge.errors import ToolCallError


@pytest.mark.parametrize(
    ("status", "body", "hint_says"),
    [
        (307, "", "redirect"),
        (302, "", "redirect"),
        (200, "<html>", "not a JSON object"),
        (400, '{"error": "no"}', "rejected the payload"),
    ],
)
def test_a_tool_error_hints_at_what_the_tool_did(status: int, body: str, hint_says: str) -> None:
    """A redirect is not followed: its hint says so, not that the answer was not JSON."""
    error = ToolCallError("t", "http://h/x", "unexpected status", status=status, body_excerpt=body)
    found = error_of(error)
    assert found["kind"] == "tool_error" and found["status"] == status
    assert hint_says in found["hint"] and found["retryable"] is False
