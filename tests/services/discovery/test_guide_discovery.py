"""The guide's "Integration with Tool Discovery" example, verbatim, routing to a real tool.

The block defines its own ``ToolDiscoveryService`` class inside ``main()``
and then uses it. Two runs, each a real subprocess as a user would paste the
code, after the guide's CRUD block (without its deletion):

1. the block exactly as written: its own class against our repository;
2. the block's usage lines with ``from omninode_bridge.services import
   ToolDiscoveryService``: our class under the guide's names and signatures.

The guide's tool lives at ``http://metadata-service:8053``; here it comes up on
loopback (a real HTTP server in this test) and re-registers there, as a
restarting tool would, with ``upsert_registration``.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap

import orjson

from tests.guide.test_guide_examples import PRELUDE, guide_block, without_deletion
from tests.services.discovery.tool_server import ToolServer
from tests.support import clean_env

GUIDE_DATA = {"content": "Hello World", "namespace": "test"}

# Between the guide's blocks: the stamping service comes up on this machine.
COMES_UP_LOCALLY = """
# (test) The metadata service starts on this machine and re-registers there.
await repository.upsert_registration(
    ModelToolRegistrationCreate(
        tool_id="metadata-stamping-v1",
        node_type="effect",
        capabilities=updated.capabilities,
        endpoints={{"stamp": "{base}/api/v1/stamp", "hash": "{base}/api/v1/hash"}},
        metadata=updated.metadata,
        health_endpoint="{base}/health",
    )
)
"""

SHOW_RESULT = """
import json
print("RESULT " + json.dumps(result, sort_keys=True))
"""


def discovery_usage(block: str) -> str:
    """The block's usage lines, from ``# Usage`` to its end (the class left out)."""
    _, sep, usage = block.partition("# Usage")
    assert sep, "the guide's discovery block has no '# Usage' part"
    return sep + usage


async def run_guide_async(blocks: list[str], dsn: str) -> tuple[list[str], str]:
    """Like the guide tests' runner, but without blocking this loop (it serves the tool)."""
    script = (
        PRELUDE
        + "\n\nasync def main():\n"
        + textwrap.indent("\n".join(blocks), "    ")
        + "\n\nasyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        env=clean_env(DATABASE_URL=dsn),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(120):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    return out.decode().splitlines(), err.decode()


def result_of(lines: list[str]) -> object:
    results = [line.removeprefix("RESULT ") for line in lines if line.startswith("RESULT ")]
    assert len(results) == 1, lines
    return orjson.loads(results[0])


async def test_the_guides_own_class_runs_verbatim_against_a_real_tool(db_dsn: str) -> None:
    block = guide_block("Integration with Tool Discovery")
    assert "class ToolDiscoveryService" in block  # the guide's own, shadowing nothing here
    async with ToolServer("metadata-service") as tool:
        lines, _ = await run_guide_async(
            [
                without_deletion(guide_block("Basic CRUD Operations")),
                COMES_UP_LOCALLY.format(base=tool.url()),
                block,
                SHOW_RESULT,
            ],
            db_dsn,
        )
    assert lines[0] == "Registered tool: metadata-stamping-v1"
    assert tool.requests == [("/api/v1/stamp", GUIDE_DATA)]
    assert result_of(lines) == {
        "tool": "metadata-service",
        "path": "/api/v1/stamp",
        "received": GUIDE_DATA,
    }


async def test_the_guides_usage_with_our_service(db_dsn: str) -> None:
    usage = discovery_usage(guide_block("Integration with Tool Discovery"))
    assert "discovery_service = ToolDiscoveryService(repository)" in usage
    async with ToolServer("metadata-service") as tool:
        lines, stderr = await run_guide_async(
            [
                without_deletion(guide_block("Basic CRUD Operations")),
                COMES_UP_LOCALLY.format(base=tool.url()),
                "from omninode_bridge.services import ToolDiscoveryService",
                usage,
                SHOW_RESULT,
                "print('CLASS', type(discovery_service).__module__)",
            ],
            db_dsn,
        )
    assert tool.requests == [("/api/v1/stamp", GUIDE_DATA)]
    assert result_of(lines) == {
        "tool": "metadata-service",
        "path": "/api/v1/stamp",
        "received": GUIDE_DATA,
    }
    assert lines[-1] == "CLASS omninode_bridge.services.discovery.service"
    # Left open as in the guide: the program still ends cleanly.
    assert "Traceback" not in stderr
    assert "Task was destroyed" not in stderr
