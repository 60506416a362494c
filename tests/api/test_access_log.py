"""The access log of a real ``toolreg serve`` (``--log-level info``), as text and as JSON."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime

import httpx
import orjson
import pytest

from tests.support import Server, bearer, start_server, stop_server, tool_body

ACCESS = re.compile(
    r"^(?P<ts>\S+) INFO omninode_bridge\.access: (?P<method>[A-Z]+) (?P<path>\S+) "
    r"(?P<status>\d{3}) (?P<ms>\d+\.\d) ms token=(?P<token>\S+) client=127\.0\.0\.1:\d+$",
    re.M,
)


def _wait_for(server: Server, needle: str) -> str:
    """The server's output once it holds ``needle`` (a line is written after the response)."""
    deadline = time.monotonic() + 10
    while needle not in (output := server.output()):
        assert time.monotonic() < deadline, f"{needle!r} not logged: {output}"
        time.sleep(0.02)
    return output


async def test_each_request_is_logged_with_its_tokens_name_never_the_secret(db_dsn: str) -> None:
    server = start_server(db_dsn, "--log-level", "info")
    try:
        secret = await server.token("write", name="team-a")
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            assert (await http.get("/health")).status_code == 200
            assert (await http.get("/v1/tools", headers=bearer(secret))).status_code == 200
            assert (await http.get("/v1/tools", headers=bearer("trg_wrong"))).status_code == 401
            missing = await http.get("/v1/tools/no-such-tool", headers=bearer(secret))
            assert missing.status_code == 404
            # A decoded newline would forge a line of its own: the path is logged as sent.
            assert (await http.get("/v1/tools/x%0AINFO%20forged")).status_code in (404, 422)
        output = _wait_for(server, "/v1/tools/x%0AINFO%20forged")
    finally:
        stop_server(server)
    lines = {(m["method"], m["path"], m["status"], m["token"]): m for m in ACCESS.finditer(output)}
    assert ("GET", "/health", "200", "-") in lines
    assert ("GET", "/v1/tools", "200", "team-a") in lines
    assert ("GET", "/v1/tools", "401", "-") in lines  # a token that did not authenticate
    assert ("GET", "/v1/tools/no-such-tool", "404", "team-a") in lines
    assert "\nINFO forged" not in output
    assert secret not in output
    assert "trg_wrong" not in output
    for match in lines.values():
        assert datetime.fromisoformat(match["ts"]).utcoffset() is not None
        assert float(match["ms"]) >= 0


@pytest.mark.parametrize("window_ms", ["5", "0"], ids=["coalesced", "single"])
async def test_a_heartbeat_is_logged_with_its_tokens_name(db_dsn: str, window_ms: str) -> None:
    """The heartbeat's fast paths (the coalescer's batch, or one statement) name the token
    too, as every other route does."""
    env = {"TOOLREG_HEARTBEAT_BATCH_WINDOW_MS": window_ms}
    server = start_server(db_dsn, "--log-level", "info", env=env)
    tool_id = f"beat-{window_ms}-{uuid.uuid4().hex[:6]}"
    try:
        secret = await server.token("write", name=f"beater-{window_ms}")
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            put = await http.put(
                f"/v1/tools/{tool_id}", json=tool_body(tool_id), headers=bearer(secret)
            )
            assert put.status_code == 201, put.text
            beat = await http.post(f"/v1/tools/{tool_id}/heartbeat", headers=bearer(secret))
            assert beat.status_code == 204
        output = _wait_for(server, f"/v1/tools/{tool_id}/heartbeat")
    finally:
        stop_server(server)
    lines = {(m["method"], m["path"], m["status"], m["token"]) for m in ACCESS.finditer(output)}
    assert ("POST", f"/v1/tools/{tool_id}/heartbeat", "204", f"beater-{window_ms}") in lines
    assert secret not in output


async def test_json_format_gives_one_object_per_line(db_dsn: str) -> None:
    server = start_server(db_dsn, "--log-level", "info", env={"TOOLREG_LOG_FORMAT": "json"})
    try:
        secret = await server.token("read", name="reader")
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            assert (await http.get("/v1/tools", headers=bearer(secret))).status_code == 200
        output = _wait_for(server, '"token":"reader"')
    finally:
        stop_server(server)
    entries = [orjson.loads(line) for line in output.splitlines() if line]  # every line
    for entry in entries:
        assert {"timestamp", "level", "logger", "message"} <= entry.keys(), entry
        assert datetime.fromisoformat(entry["timestamp"]).utcoffset() is not None
    assert any(e["message"] == "Application startup complete." for e in entries)
    access = [e for e in entries if e["logger"] == "omninode_bridge.access"]
    mine = [e for e in access if e["token"] == "reader"]
    assert len(mine) == 1
    assert mine[0]["method"] == "GET"
    assert mine[0]["path"] == "/v1/tools"
    assert mine[0]["status"] == 200
    assert isinstance(mine[0]["duration_ms"], float)
    assert mine[0]["client"].startswith("127.0.0.1:")
    assert secret not in output
