"""The guide's schema, created by Alembic revision 1, checked column by column."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from omninode_bridge.migrations import HEAD_REVISION, runner
from tests.support import REPO_ROOT, clean_env, connection, run_cli

EXPECTED_COLUMNS = {
    # name: (data_type, max_length, nullable, default contains)
    "id": ("uuid", None, "NO", "gen_random_uuid()"),
    "tool_id": ("character varying", 255, "NO", None),
    "node_type": ("character varying", 50, "NO", None),
    "capabilities": ("jsonb", None, "YES", "'{}'::jsonb"),
    "endpoints": ("jsonb", None, "YES", "'{}'::jsonb"),
    "metadata": ("jsonb", None, "YES", "'{}'::jsonb"),
    "health_endpoint": ("character varying", 500, "YES", None),
    "last_heartbeat": ("timestamp with time zone", None, "YES", None),
    "registered_at": ("timestamp with time zone", None, "YES", "now()"),
    "updated_at": ("timestamp with time zone", None, "YES", "now()"),
}

EXPECTED_INDEXES = {
    "idx_tool_registrations_tool_id": "btree (tool_id)",
    "idx_tool_registrations_node_type": "btree (node_type)",
    "idx_tool_registrations_last_heartbeat": "btree (last_heartbeat DESC)",
    "idx_tool_registrations_capabilities_gin": "gin (capabilities)",
    "idx_tool_registrations_endpoints_gin": "gin (endpoints)",
    "idx_tool_registrations_metadata_gin": "gin (metadata)",
    "tool_registrations_pkey": "btree (id)",
    "tool_registrations_tool_id_key": "btree (tool_id)",
}


async def _columns(conn: asyncpg.Connection) -> dict[str, tuple[object, ...]]:
    rows = await conn.fetch(
        """SELECT column_name, data_type, character_maximum_length, is_nullable, column_default
           FROM information_schema.columns WHERE table_name = 'tool_registrations'"""
    )
    return {r["column_name"]: tuple(r)[1:] for r in rows}


async def _indexes(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tool_registrations'"
    )
    return {r["indexname"]: r["indexdef"] for r in rows}


async def test_columns_match_the_guide(db_dsn: str) -> None:
    async with connection(db_dsn) as conn:
        columns = await _columns(conn)
    assert set(columns) == set(EXPECTED_COLUMNS)
    for name, (data_type, length, nullable, default) in EXPECTED_COLUMNS.items():
        got_type, got_length, got_nullable, got_default = columns[name]
        assert (got_type, got_length, got_nullable) == (data_type, length, nullable), name
        if default is None:
            assert got_default is None, name
        else:
            assert default in str(got_default), name


async def test_indexes_match_the_guide(db_dsn: str) -> None:
    async with connection(db_dsn) as conn:
        indexes = await _indexes(conn)
    assert set(indexes) == set(EXPECTED_INDEXES)
    for name, suffix in EXPECTED_INDEXES.items():
        assert indexes[name].endswith(f"USING {suffix}"), indexes[name]
    assert "UNIQUE" in indexes["tool_registrations_tool_id_key"]


async def test_check_constraint_rejects_unknown_node_type(db_dsn: str) -> None:
    async with connection(db_dsn) as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO tool_registrations (tool_id, node_type) VALUES ('x', 'gateway')"
            )
        await conn.execute(
            "INSERT INTO tool_registrations (tool_id, node_type) VALUES ('y', 'effect')"
        )
        row = await conn.fetchrow("SELECT id, capabilities, registered_at FROM tool_registrations")
        assert row is not None
        assert row["id"].version == 4
        assert row["registered_at"].tzinfo is not None
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO tool_registrations (tool_id, node_type) VALUES ('y', 'compute')"
            )


async def test_upgrade_downgrade_upgrade_cycle(empty_db_dsn: str) -> None:
    assert await runner.current_revision(empty_db_dsn) is None
    await runner.upgrade(empty_db_dsn)
    assert await runner.current_revision(empty_db_dsn) == HEAD_REVISION
    await runner.downgrade(empty_db_dsn, "base")
    assert await runner.current_revision(empty_db_dsn) is None
    async with connection(empty_db_dsn) as conn:
        assert await conn.fetchval("SELECT to_regclass('tool_registrations')") is None
    await runner.upgrade(empty_db_dsn)
    assert await runner.current_revision(empty_db_dsn) == HEAD_REVISION


def test_code_expects_the_alembic_head() -> None:
    assert runner.head_revision() == HEAD_REVISION
    revisions = runner.history()
    assert revisions[0].revision == HEAD_REVISION
    assert revisions[0].is_head
    assert revisions[-1].down_revision is None


async def test_two_processes_migrating_at_once(empty_db_dsn: str) -> None:
    env = clean_env(DATABASE_URL=empty_db_dsn)
    procs = [
        await asyncio.create_subprocess_exec(
            *run_cli_args("db", "upgrade"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    results = [await p.communicate() for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()
        assert HEAD_REVISION in out.decode()
    assert await runner.current_revision(empty_db_dsn) == HEAD_REVISION
    async with connection(empty_db_dsn) as conn:
        assert await conn.fetchval("SELECT count(*) FROM alembic_version") == 1
        assert len(await _indexes(conn)) == len(EXPECTED_INDEXES)


def run_cli_args(*args: str) -> list[str]:
    from tests.support import TOOLREG

    return [TOOLREG, *args]


async def test_alembic_commands_from_the_repository_root(empty_db_dsn: str) -> None:
    env = clean_env(DATABASE_URL=empty_db_dsn)
    alembic = str(__import__("pathlib").Path(run_cli_args()[0]).with_name("alembic"))

    async def alembic_run(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            alembic,
            *args,
            cwd=REPO_ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()
        return out.decode()

    await alembic_run("upgrade", "head")
    assert f"{HEAD_REVISION} (head)" in await alembic_run("current")
    assert f"-> {HEAD_REVISION} (head)" in await alembic_run("history")
    await alembic_run("downgrade", "-1")
    previous = runner.history()[1].revision
    assert await runner.current_revision(empty_db_dsn) == previous
    await alembic_run("downgrade", "base")
    assert run_cli("db", "current", env=env).stdout.startswith("(none)")
