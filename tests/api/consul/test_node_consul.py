"""node-consul (the ``consul`` npm package) against a real ``toolreg serve``.

A second Consul client, independent of py-consul: ``node/check.js`` lists the
catalog's services and a service's nodes, reads its passing instances with
their ``X-Consul-Index``, and then blocks on that index until the test
registers another instance. ``node/node_modules`` comes from ``npm ci`` (CI
runs it in its install step; run here only when the installed packages do not
match ``package-lock.json``, so a test run needs no network after that).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Server, bearer, running_server

NODE_DIR = Path(__file__).with_name("node")
NPM_CI_TIMEOUT = 300.0
LINE_TIMEOUT = 30.0  # one step of the script; the blocking call's wait is 10 s
STILL_BLOCKED = 0.5  # how long the blocked call must stay unanswered before the change
WOKEN_WITHIN = 2.0  # after the registration; the wait (10 s) is what it must not have hit

ENV = {"TOOLREG_NODE_NAME": "registry-node", "TOOLREG_DATACENTER": "dc-node"}


def _installed() -> bool:
    """Whether node_modules holds exactly the versions package-lock.json names."""
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    for path, entry in lock["packages"].items():
        if not path:  # the root project itself
            continue
        try:
            found = json.loads((NODE_DIR / path / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            return False
        if found != entry["version"]:
            return False
    return True


@pytest.fixture(scope="module")
def check_js() -> Path:
    """``node/check.js``, with its packages installed (``npm ci`` once if they are not)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed (.ci/run installs them with apt-get)")
    # Two test runs in one working tree: one npm ci at a time, the other waits.
    with (NODE_DIR / "package.json").open() as anchor:
        fcntl.flock(anchor, fcntl.LOCK_EX)
        if not _installed():
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT,
                check=False,
            )
            assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
            assert _installed(), "npm ci did not install what package-lock.json names"
    return NODE_DIR / "check.js"


@pytest.fixture(scope="module")
def registry(module_db: str) -> Iterator[Server]:
    with running_server(module_db, env=ENV) as running:
        yield running


def tool(tool_id: str, service: str, host: str, port: int) -> dict[str, Any]:
    return {
        "tool_id": tool_id,
        "node_type": "effect",
        "capabilities": {"operations": [service]},
        "endpoints": {service: f"http://{host}:{port}/api/{service}"},
        "metadata": {"tags": ["node-client"], "replicas": 2},
    }


class Script:
    """``node check.js`` as a subprocess; its JSON lines, one at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())
        self.stderr = ""

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            try:
                self.lines.put_nowait(json.loads(raw))
            except ValueError:
                self.lines.put_nowait({"event": "not JSON", "text": raw.decode(errors="replace")})

    async def next(self, event: str) -> dict[str, Any]:
        try:
            line = await asyncio.wait_for(self.lines.get(), LINE_TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"check.js printed nothing for {LINE_TIMEOUT:g} s") from None
        assert line["event"] == event, line
        return line

    async def finish(self, kill: bool = False) -> int:
        """Wait for the exit (kill first with ``kill``, or if it hangs); the exit code."""
        if self.process.returncode is None:
            try:
                if kill:
                    self.process.kill()
                await asyncio.wait_for(self.process.wait(), LINE_TIMEOUT)
            except TimeoutError:
                self.process.kill()
            except ProcessLookupError:
                pass
            await self.process.wait()
            await self._reader
            assert self.process.stderr is not None
            self.stderr = (await self.process.stderr.read()).decode(errors="replace")
        assert self.process.returncode is not None
        return self.process.returncode


@contextlib.asynccontextmanager
async def run_check(check_js: Path, server: Server, service: str) -> AsyncIterator[Script]:
    """``node check.js HOST:PORT SERVICE``; killed when the block fails, else waited for."""
    node = shutil.which("node")
    assert node is not None
    process = await asyncio.create_subprocess_exec(
        node,
        str(check_js),
        server.base_url.removeprefix("http://"),
        service,
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    script = Script(process)
    try:
        yield script
    except BaseException:
        await script.finish(kill=True)
        raise
    await script.finish()


async def test_node_consul_reads_the_catalog_and_blocks_until_a_registration(
    check_js: Path, registry: Server, uid: str
) -> None:
    token = bearer(await registry.token("write"))
    service = f"node-{uid}"
    first_id, second_id = f"{service}-a", f"{service}-b"
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        put = await http.put(
            f"/v1/tools/{first_id}",
            json=tool(first_id, service, "10.20.30.40", 9411),
            headers=token,
        )
        assert put.status_code == 201, put.text

        async with run_check(check_js, registry, service) as script:
            services = await script.next("services")
            assert sorted(services["services"][service]) == ["effect", "node-client"]
            assert "node-type:effect" in services["services"]
            assert int(services["index"]) >= 1

            nodes = (await script.next("nodes"))["nodes"]
            assert nodes == [
                {
                    "Node": "registry-node",
                    "ServiceID": first_id,
                    "ServiceName": service,
                    "ServiceAddress": "10.20.30.40",
                    "ServicePort": 9411,
                    "ServiceTags": ["effect", "node-client"],
                }
            ]

            health = await script.next("health")
            assert health["knownLeader"] is True and health["lastContact"] == 0
            assert health["entries"] == [
                {
                    "ID": first_id,
                    "Address": "10.20.30.40",
                    "Port": 9411,
                    "Checks": [[f"service:{first_id}:heartbeat", "passing"]],
                }
            ]
            # The index node-consul read is the one the server sends for that query.
            direct = await http.get(f"/v1/health/service/{service}", params={"passing": "1"})
            assert health["index"] == direct.headers["x-consul-index"]
            assert int(health["index"]) >= 1

            blocked = await script.next("blocked")
            assert blocked["index"] == health["index"]
            await asyncio.sleep(STILL_BLOCKED)
            assert script.lines.empty(), "the blocking query answered before anything changed"
            assert script.process.returncode is None

            put = await http.put(
                f"/v1/tools/{second_id}",
                json=tool(second_id, service, "10.20.30.41", 9412),
                headers=token,
            )
            assert put.status_code == 201, put.text
            registered = time.monotonic()
            woken = await script.next("woken")
            after = time.monotonic() - registered

            # Woken by the registration, not by the 10 s wait.
            assert after < WOKEN_WITHIN, f"answered {after:.2f} s after the registration"
            assert woken["elapsedMs"] >= STILL_BLOCKED * 1000
            assert int(woken["index"]) > int(health["index"])
            direct = await http.get(f"/v1/health/service/{service}", params={"passing": "1"})
            assert woken["index"] == direct.headers["x-consul-index"]
            assert [(e["ID"], e["Address"], e["Port"]) for e in woken["entries"]] == [
                (first_id, "10.20.30.40", 9411),
                (second_id, "10.20.30.41", 9412),
            ]
        assert script.process.returncode == 0, script.stderr
