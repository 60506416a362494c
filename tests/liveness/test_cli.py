"""``toolreg reap``, ``toolreg check`` and ``toolreg tools history`` as real subprocesses."""

from __future__ import annotations

import asyncio

import orjson

from omninode_bridge.services import ToolRegistrationRepository
from tests.liveness.health_server import HealthServer
from tests.liveness.helpers import register
from tests.support import TOOLREG, clean_env


async def toolreg(*args: str, dsn: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run the installed CLI without blocking the loop (the test's health server answers it)."""
    process = await asyncio.create_subprocess_exec(
        TOOLREG,
        *args,
        env=clean_env(DATABASE_URL=dsn, COLUMNS="250", TOOLREG_TTL_SECONDS="60"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_reap_dry_run_self_preservation_and_force(
    db_dsn: str, repository: ToolRegistrationRepository
) -> None:
    for i in range(3):
        await register(repository, f"old-{i}", heartbeat_age=7200)
    for i in range(2):
        await register(repository, f"fresh-{i}")

    code, out, _ = await toolreg("reap", "--dry-run", dsn=db_dsn)
    assert code == 3
    assert "self-preservation engaged: 3 of 5 registered tools (60%)" in out
    assert "would remove nothing" in out
    code, out, _ = await toolreg("reap", dsn=db_dsn)
    assert code == 3 and "removed nothing" in out
    assert await repository.count_registrations() == 5

    code, out, _ = await toolreg("reap", "--dry-run", "--force", dsn=db_dsn)
    assert code == 0
    assert "would remove 3 of 5 tools (self-preservation overridden by --force)" in out
    assert "old-0, old-1, old-2" in out
    assert await repository.count_registrations() == 5

    code, out, _ = await toolreg("reap", "--force", dsn=db_dsn)
    assert code == 0 and "removed 3 of 5 tools" in out and "old-0, old-1, old-2" in out
    assert await repository.count_registrations() == 2

    code, out, _ = await toolreg("reap", "--json", dsn=db_dsn)
    report = orjson.loads(out)
    assert code == 0 and report["removed"] == [] and report["total"] == 2


async def test_check_prints_a_table_and_history_tells_the_story(
    db_dsn: str, repository: ToolRegistrationRepository, health_server: HealthServer
) -> None:
    await register(repository, "good", health=health_server.url("/good"))
    await register(repository, "bad", health=health_server.url("/bad"))
    await register(repository, "plain")
    health_server.answer("/bad", 503, body=b"[maintenance] back soon")

    for _ in range(2):
        code, out, err = await toolreg("check", dsn=db_dsn)
        assert code == 0, err
    code, out, _ = await toolreg("check", dsn=db_dsn)
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert "passing" in lines["good"] and "ok 200" in lines["good"]
    assert "critical" in lines["bad"] and "3 failed in a row" in lines["bad"]
    assert "now critical: HTTP 503: [maintenance] back soon" in lines["bad"]
    assert "unknown" in lines["plain"] and "no health endpoint" in lines["plain"]
    assert "checked 2 of 3 tools" in out and "bad critical" in out

    code, out, _ = await toolreg("check", "--json", dsn=db_dsn)
    results = {r["tool_id"]: r for r in orjson.loads(out)["results"]}
    assert results["bad"]["status"] == "critical" and results["bad"]["consecutive_failures"] == 4
    assert results["plain"]["checked"] is False

    code, out, _ = await toolreg("tools", "list", "--json", dsn=db_dsn)
    assert code == 0
    assert {r["tool_id"]: r["critical"] for r in orjson.loads(out)} == {
        "bad": True,
        "good": False,
        "plain": False,
    }
    code, out, _ = await toolreg("tools", "list", dsn=db_dsn)
    assert out.count("critical") == 1 and out.count("healthy") == 2

    await repository.delete_registration("bad", reason="retired")
    code, out, _ = await toolreg("tools", "history", "bad", dsn=db_dsn)
    assert code == 0
    events = [line.split("│")[2].strip() for line in out.splitlines() if line.startswith("│")]
    assert events == ["registered", "critical", "removed"]
    assert "3 consecutive failed checks" in out and "retired" in out
    assert "now: not registered" in out

    code, out, _ = await toolreg("tools", "history", "good", "--json", dsn=db_dsn)
    history = orjson.loads(out)
    assert [e["kind"] for e in history["events"]] == ["created"]
    assert history["now"]["routable"] is True

    code, _, err = await toolreg("tools", "history", "never-there", dsn=db_dsn)
    assert code == 1 and "'never-there' is not registered" in err
