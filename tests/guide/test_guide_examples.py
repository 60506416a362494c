"""The usage guide's examples, run verbatim against a real database, results checked.

The code comes straight out of ``docs/usage-guide.md`` (a copy of the spec,
kept identical by CI). Each block runs inside ``async def main()`` in a real
subprocess, as a user would paste it, with only the imports it assumes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import uuid

from tests.support import REPO_ROOT, clean_env

GUIDE = REPO_ROOT / "docs" / "usage-guide.md"

PRELUDE = """\
import asyncio
from datetime import datetime
from typing import Any, List, Optional

import httpx

from omninode_bridge.models import ModelToolRegistration, ModelToolRegistrationCreate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
"""


def guide_block(title: str) -> str:
    """The first python block under the heading ``### title``."""
    text = GUIDE.read_text(encoding="utf-8")
    match = re.search(
        rf"^### {re.escape(title)}\n+```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL
    )
    assert match, f"no python block under '### {title}' in {GUIDE}"
    return match.group(1)


def without_deletion(crud: str) -> str:
    """The CRUD block up to its "# Delete Registration" step."""
    head, sep, _ = crud.partition("# Delete Registration")
    assert sep
    return head


def run_guide(blocks: list[str], dsn: str) -> list[str]:
    body = "\n".join(blocks)
    script = (
        PRELUDE
        + "\n\nasync def main():\n"
        + textwrap.indent(body, "    ")
        + "\n\nasyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=clean_env(DATABASE_URL=dsn),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_sections_in_the_guides_order(db_dsn: str) -> None:
    out = run_guide(
        [
            guide_block("Basic CRUD Operations"),
            guide_block("Health Monitoring"),
            guide_block("Advanced Querying"),
            guide_block("Batch Registration"),
        ],
        db_dsn,
    )
    assert out[0] == "Registered tool: metadata-stamping-v1"
    registration_id = out[1].removeprefix("Registration ID: ")
    assert uuid.UUID(registration_id).version == 4
    assert out[2] == "Found tool: metadata-stamping-v1"
    assert out[3] == "Node type: effect"
    assert out[4].startswith("Capabilities: {'operations': ['stamp', 'validate', 'hash']")
    assert out[5] == "Deletion successful: True"
    # The tool was deleted: the heartbeat finds nothing, and nothing is listed.
    assert out[6] == "Found 0 healthy tools"
    assert out[7:12] == [
        "Total registered tools: 0",
        "Effect nodes: 0",
        "Compute nodes: 0",
        "Tools with stamping capability: 0",
        "✓ Registered: onextree-intelligence-v1",
    ]
    assert out[12] == "✓ Registered: workflow-orchestrator-v1"
    assert len(out) == 13


def test_sections_with_tools_in_place(db_dsn: str) -> None:
    out = run_guide(
        [
            without_deletion(guide_block("Basic CRUD Operations")),
            guide_block("Batch Registration"),
            guide_block("Health Monitoring"),
            guide_block("Advanced Querying"),
        ],
        db_dsn,
    )
    assert out[0] == "Registered tool: metadata-stamping-v1"
    assert out[5:7] == [
        "✓ Registered: onextree-intelligence-v1",
        "✓ Registered: workflow-orchestrator-v1",
    ]
    health = out.index("Found 3 healthy tools")
    ages = out[health + 1 : health + 4]
    assert [line.split(":")[0].strip() for line in ages] == [
        "- metadata-stamping-v1",
        "- onextree-intelligence-v1",
        "- workflow-orchestrator-v1",
    ]
    for line in ages:
        seconds = int(re.search(r"last seen (-?\d+)s ago", line).group(1))  # type: ignore[union-attr]
        assert 0 <= seconds < 30, line
    assert out[health + 4 :] == [
        "Total registered tools: 3",
        "Effect nodes: 1",
        "Compute nodes: 1",
        "Tools with stamping capability: 1",
        "  - metadata-stamping-v1: ['stamp', 'validate', 'hash', 'batch_stamp']",
    ]


def test_batch_example_reports_a_duplicate_and_goes_on(db_dsn: str) -> None:
    crud = without_deletion(guide_block("Basic CRUD Operations"))
    batch = guide_block("Batch Registration")
    out = run_guide([crud, batch, batch], db_dsn)
    assert out[5:7] == [
        "✓ Registered: onextree-intelligence-v1",
        "✓ Registered: workflow-orchestrator-v1",
    ]
    assert out[7:] == [
        "✗ Failed to register onextree-intelligence-v1: "
        "tool_id 'onextree-intelligence-v1' already registered",
        "✗ Failed to register workflow-orchestrator-v1: "
        "tool_id 'workflow-orchestrator-v1' already registered",
    ]
