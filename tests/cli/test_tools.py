"""``toolreg tools``, ``toolreg token`` and ``toolreg heartbeat`` as real subprocesses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import yaml

from tests.support import clean_env, connection, run_cli

TOOLS = [
    {
        "tool_id": "onextree-intelligence-v1",
        "node_type": "compute",
        "capabilities": {"operations": ["analyze", "predict"], "max_file_size": 2000},
        "endpoints": {"analyze": "http://onextree:8080/api/v1/analyze"},
    },
    {
        "tool_id": "workflow-orchestrator-v1",
        "node_type": "orchestrator",
        "capabilities": {"operations": ["execute"], "max_file_size": 10},
        "endpoints": {"execute": "http://orchestrator:8081/api/v1/execute"},
    },
]


def test_register_list_show_search_heartbeat_delete(db_dsn: str, tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=db_dsn, COLUMNS="200")
    file = tmp_path / "tools.yaml"
    file.write_text(yaml.safe_dump(TOOLS))
    registered = run_cli("tools", "register", "-f", str(file), env=env)
    assert registered.returncode == 0, registered.stderr
    assert "registered onextree-intelligence-v1" in registered.stdout

    again = run_cli("tools", "register", "-f", str(file), env=env)
    assert again.returncode == 1
    assert "already registered" in again.stderr
    assert "Traceback" not in again.stderr

    listed = run_cli("tools", "list", "--json", env=env)
    rows = orjson.loads(listed.stdout)
    assert [r["tool_id"] for r in rows] == ["onextree-intelligence-v1", "workflow-orchestrator-v1"]
    assert all(r["heartbeat_age_seconds"] < 60 for r in rows)
    table = run_cli("tools", "list", "--node-type", "compute", env=env)
    assert "onextree-intelligence-v1" in table.stdout
    assert "healthy" in table.stdout
    assert "workflow-orchestrator-v1" not in table.stdout

    shown = orjson.loads(
        run_cli("tools", "show", "workflow-orchestrator-v1", "--json", env=env).stdout
    )
    assert shown["node_type"] == "orchestrator"
    missing = run_cli("tools", "show", "nope", env=env)
    assert missing.returncode == 1
    assert "'nope' is not registered" in missing.stderr

    search = run_cli(
        "tools",
        "search",
        "--capability",
        "operations=analyze",
        "--where",
        "$.max_file_size > 1000",
        "--json",
        env=env,
    )
    assert [r["tool_id"] for r in orjson.loads(search.stdout)] == ["onextree-intelligence-v1"]
    none = run_cli(
        "tools", "search", "-c", "operations=analyze", "--where", "$.max_file_size > 5000", env=env
    )
    assert "no tools match" in none.stdout
    bad = run_cli("tools", "search", "--where", "$.x >>> 1", env=env)
    assert bad.returncode == 1
    assert "where" in bad.stderr

    beat = run_cli("heartbeat", "onextree-intelligence-v1", "ghost", env=env)
    assert beat.returncode == 1
    assert "not registered: ghost" in beat.stderr

    assert run_cli("tools", "delete", "workflow-orchestrator-v1", env=env).returncode == 0
    assert run_cli("tools", "delete", "workflow-orchestrator-v1", env=env).returncode == 1


def test_register_rejects_bad_files_and_names_fields(db_dsn: str, tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=db_dsn)
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            [TOOLS[0], {"tool_id": "x", "node_type": "gateway", "endpoints": {"a": "ftp://x"}}]
        )
    )
    result = run_cli("tools", "register", "-f", str(bad), env=env)
    assert result.returncode == 1
    # Each field is named by its path, its tool's tool_id and its position in the list.
    assert "node_type of tool_id 'x', [1] in bad.json: Input should be" in result.stderr
    assert "endpoints.a of tool_id 'x', [1] in bad.json" in result.stderr
    assert orjson.loads(run_cli("tools", "list", "--json", env=env).stdout) == []
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("{: [")
    assert "file" in run_cli("tools", "register", "-f", str(garbage), env=env).stderr


LONG_ID = "a-very-long-tool-identifier-for-the-onextree-intelligence-service-v1"
LONG_URL = "http://onextree-intelligence.internal.example.com:8080/api/v1/analyze"


def _column(table: str, index: int) -> str:
    """The cells of column ``index`` of a rich table, their wrapped lines joined."""
    cells = [line.split("\u2502")[index].strip() for line in table.splitlines() if "\u2502" in line]
    return "".join(cells)


def test_list_wraps_long_ids_and_urls_on_a_narrow_terminal(db_dsn: str, tmp_path: Path) -> None:
    file = tmp_path / "tools.yaml"
    tool = {
        "tool_id": LONG_ID,
        "node_type": "compute",
        "capabilities": {"operations": ["analyze"]},
        "endpoints": {"analyze": LONG_URL},
        "metadata": {"version": "1.2.3", "tags": ["x"]},
    }
    file.write_text(yaml.safe_dump([tool, {**TOOLS[1]}]))
    env = clean_env(DATABASE_URL=db_dsn, COLUMNS="60")
    assert run_cli("tools", "register", "-f", str(file), env=env).returncode == 0

    narrow = run_cli("tools", "list", env=env)
    assert narrow.returncode == 0, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 60
    assert "\u2026" not in narrow.stdout  # rich's ellipsis: nothing is cut
    assert LONG_ID not in narrow.stdout  # it does not fit on one line of 60...
    assert _column(narrow.stdout, 1) == LONG_ID + "workflow-orchestrator-v1"  # ...so it wraps

    wide = run_cli("tools", "list", "--wide", env=env)
    assert max(len(line) for line in wide.stdout.splitlines()) <= 60
    assert _column(wide.stdout, 1) == LONG_ID + "workflow-orchestrator-v1"
    assert _column(wide.stdout, 4) == (
        f"analyze:{LONG_URL}execute:http://orchestrator:8081/api/v1/execute"
    )
    assert "version=1.2.3" in _column(wide.stdout, 6)
    roomy = run_cli("tools", "list", "--wide", env={**env, "COLUMNS": "250"})
    assert LONG_ID in roomy.stdout
    assert LONG_URL in roomy.stdout
    assert "endpoints" not in run_cli("tools", "list", env={**env, "COLUMNS": "250"}).stdout


def test_register_over_existing_tools_suggests_upsert(db_dsn: str, tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=db_dsn)
    file = tmp_path / "tools.yaml"
    file.write_text(yaml.safe_dump(TOOLS))
    assert run_cli("tools", "register", "-f", str(file), env=env).returncode == 0
    again = run_cli("tools", "register", "-f", str(file), env=env)
    assert again.returncode == 1
    assert "already registered" in again.stderr
    assert (
        f"hint: nothing was registered; to replace existing tools: toolreg tools register "
        f"--upsert -f {file}" in again.stderr
    )
    upserted = run_cli("tools", "register", "--upsert", "-f", str(file), env=env)
    assert upserted.returncode == 0, upserted.stderr
    assert "replaced onextree-intelligence-v1" in upserted.stdout


def test_register_names_a_single_tool_and_a_missing_id(db_dsn: str, tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=db_dsn)
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"tool_id": "solo-v1", "node_type": "gateway"}))
    result = run_cli("tools", "register", "-f", str(one), env=env)
    assert result.returncode == 1
    assert "node_type of tool_id 'solo-v1': Input should be" in result.stderr
    nameless = tmp_path / "nameless.yaml"
    nameless.write_text(yaml.safe_dump([TOOLS[0], {"node_type": "compute"}]))
    result = run_cli("tools", "register", "-f", str(nameless), env=env)
    assert "tool_id of [1] in nameless.yaml: Field required" in result.stderr


def test_token_create_list_revoke(db_dsn: str) -> None:
    env = clean_env(DATABASE_URL=db_dsn)
    created = run_cli("token", "create", "--name", "ci-bot", "--scope", "write", env=env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("trg_")
    assert len(secret) >= 4 + 43  # 256 random bits
    listed = run_cli("token", "list", "--json", env=env)
    rows = orjson.loads(listed.stdout)
    assert [(r["name"], r["scope"]) for r in rows] == [("ci-bot", "write")]
    assert secret not in listed.stdout
    dup = run_cli("token", "create", "--name", "ci-bot", env=env)
    assert dup.returncode == 1
    assert "already exists" in dup.stderr
    bad_scope = run_cli("token", "create", "--name", "x", "--scope", "root", env=env)
    assert bad_scope.returncode != 0
    assert run_cli("token", "revoke", "ci-bot", env=env).returncode == 0
    assert orjson.loads(run_cli("token", "list", "--json", env=env).stdout) == []
    assert run_cli("token", "revoke", "ci-bot", env=env).returncode == 1


def test_serve_refuses_a_database_behind_with_no_migrate(empty_db_dsn: str) -> None:
    result = run_cli(
        "serve", "--no-migrate", "--port", "0", env=clean_env(DATABASE_URL=empty_db_dsn)
    )
    assert result.returncode == 1
    assert "toolreg db upgrade" in result.stderr
    assert "Traceback" not in result.stderr


async def test_show_gives_every_field_and_the_health_now(db_dsn: str, tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=db_dsn, COLUMNS="200")
    file = tmp_path / "tools.yaml"
    file.write_text(yaml.safe_dump({**TOOLS[0], "metadata": {"team": "search"}}))
    assert run_cli("tools", "register", "-f", str(file), env=env).returncode == 0
    tool_id = str(TOOLS[0]["tool_id"])

    shown = run_cli("tools", "show", tool_id, env=env)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    for field in ("node_type", "capabilities", "endpoint analyze", "health_endpoint"):
        assert field in text
    assert "http://onextree:8080/api/v1/analyze" in text and '{"team":"search"}' in text
    assert "healthy" in text and "within the TTL" in text

    # The active checks found it failing: show says so, as GET /v1/tools/{id} does.
    async with connection(db_dsn) as conn:
        await conn.execute(
            "INSERT INTO tool_health (tool_id, check_status, check_changed_at, last_checked_at)"
            " VALUES ($1, 'critical', now(), now())",
            tool_id,
        )
    critical = run_cli("tools", "show", tool_id, env=env).stdout
    assert "critical" in critical.split("health", 1)[1].splitlines()[0]
    assert re.search(r"^checks\s+critical since \S+Z, last checked", critical, re.M)
    document = orjson.loads(run_cli("tools", "show", tool_id, "--json", env=env).stdout)
    assert document["health"]["status"] == "critical"
    assert document["endpoints"] == TOOLS[0]["endpoints"]

    # Capabilities are free JSON: operations that are not a list of strings still show.
    odd = {**TOOLS[1], "tool_id": "odd-ops", "capabilities": {"operations": ["read", 2]}}
    file.write_text(yaml.safe_dump(odd))
    assert run_cli("tools", "register", "-f", str(file), env=env).returncode == 0
    shown = run_cli("tools", "show", "odd-ops", env=env)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^operations\s+read, 2\s*$", shown.stdout, re.M)

    # Anybody's text reaches an operator's terminal: no escape sequence or bidi override
    # gets through raw (one would clear the screen, the other reorder what it shows).
    hostile = {
        **TOOLS[1],
        "tool_id": "hostile-text",
        "capabilities": {"operations": ["\x1b[2Jclear", "\u202eesrever"]},
        "metadata": {"note": "\x1b]0;title\x07"},
    }
    file.write_text(json.dumps(hostile))
    assert run_cli("tools", "register", "-f", str(file), env=env).returncode == 0
    for args in (("tools", "show", "hostile-text"), ("tools", "list", "--wide")):
        out = run_cli(*args, env=env).stdout
        assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out, args
        assert "\\u001b[2Jclear" in out, args
