"""``toolreg db`` as a real subprocess."""

from __future__ import annotations

import asyncpg

from omninode_bridge.migrations import HEAD_REVISION
from tests.support import clean_env, run_cli


async def test_upgrade_current_history_url(empty_db_dsn: str) -> None:
    env = clean_env(DATABASE_URL=empty_db_dsn)
    up = run_cli("db", "upgrade", env=env)
    assert up.returncode == 0, up.stderr
    assert f"{HEAD_REVISION} (head)" in up.stdout
    cur = run_cli("db", "current", env=env)
    assert cur.stdout.strip() == f"{HEAD_REVISION} (head)"
    hist = run_cli("db", "history", env=env)
    assert f"-> {HEAD_REVISION} (head)" in hist.stdout
    assert "<base> -> 0001" in hist.stdout
    url = run_cli("db", "url", env=env)
    assert url.returncode == 0
    conn = await asyncpg.connect(url.stdout.strip())
    try:
        assert (
            await conn.fetchval("SELECT to_regclass('tool_registrations')::text")
            == "tool_registrations"
        )
    finally:
        await conn.close()
    down = run_cli("db", "downgrade", "base", env=env)
    assert down.returncode == 0, down.stderr
    assert "(base)" in down.stdout


def test_unreachable_database_is_one_line_and_exit_1() -> None:
    env = clean_env(
        DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere", TOOLREG_CONNECT_TIMEOUT="3"
    )
    result = run_cli("db", "current", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "127.0.0.1:1/nowhere" in lines[0]
    debug = run_cli("--debug", "db", "current", env=env)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr


def test_bad_setting_names_the_variable() -> None:
    result = run_cli("db", "current", env=clean_env(DATABASE_URL="mysql://x@y/z"))
    assert result.returncode == 1
    assert "DATABASE_URL" in result.stderr


def test_stop_refuses_an_external_database() -> None:
    result = run_cli("db", "stop", env=clean_env(DATABASE_URL="postgresql://u@127.0.0.1:1/x"))
    assert result.returncode == 1
    assert "embedded" in result.stderr


def test_help_explains_itself() -> None:
    result = run_cli("db", "--help", env=clean_env())
    assert result.returncode == 0
    for command in ("upgrade", "downgrade", "current", "history", "url", "psql", "stop"):
        assert command in result.stdout
