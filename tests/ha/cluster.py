"""A Patroni cluster on loopback, started and stopped by ``deploy/ha/up`` and ``down``.

Used by the ha tests and by ``benchmarks/bench_failover.py``. Every port is a
free one and everything lives in a temporary directory, so it runs beside
anything else on the machine (Debian's own PostgreSQL on 5432 included).
``kill_node`` is the loss of a machine: its Patroni and its PostgreSQL (the
postmaster's whole process group) get SIGKILL at once. ``kill_postmaster``
kills the postmaster alone, which Patroni restarts in place.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import REPO_ROOT, TOOLREG, free_port

__all__ = ["DEPLOY", "HaCluster", "Node", "alive", "missing_requirements", "run_command"]

DEPLOY = REPO_ROOT / "deploy" / "ha"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def missing_requirements() -> str | None:
    """Why the cluster cannot run here (``None``: it can)."""
    for binary in ("patroni", "patronictl", "etcd", "curl", "setpriv"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed (apt-get install -y patroni etcd-server curl)"
    if not (PG_BIN / "postgres").exists():
        return f"no PostgreSQL 15 in {PG_BIN} (apt-get install -y postgresql-15)"
    if os.geteuid() != 0:
        return "the cluster runs PostgreSQL as the postgres user: run as root"
    return None


def alive(pid: int) -> bool:
    """A running process (not a zombie: nothing may reap the orphans deploy/ha/up leaves)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


@dataclass(frozen=True)
class Node:
    """One Patroni node: its name, PostgreSQL port, REST port and directory."""

    name: str
    pg_port: int
    rest_port: int
    dir: Path

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def patroni_pid(self) -> int | None:
        try:
            pid = int((self.dir / "pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def postmaster_pid(self) -> int | None:
        try:
            pid = int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if alive(pid) else None


class HaCluster:
    """``deploy/ha/up`` with free ports in a temporary directory (``replicas`` registry
    replicas: none by default, the tests start their own)."""

    def __init__(
        self,
        nodes: int = 2,
        *,
        replicas: int = 0,
        ttl: int = 8,
        loop_wait: int = 1,
        retry_timeout: int = 3,
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="toolreg-ha-", dir="/tmp"))
        self.root.chmod(0o755)
        self.nodes = [
            Node(f"node{i}", free_port(), free_port(), self.root / f"node{i}")
            for i in range(1, nodes + 1)
        ]
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HA_DIR": str(self.root),
            "HA_NODES": str(nodes),
            "HA_REPLICAS": str(replicas),
            "HA_REGISTRY_PORTS": " ".join(str(free_port()) for _ in range(max(replicas, 1))),
            "HA_PG_PORTS": " ".join(str(n.pg_port) for n in self.nodes),
            "HA_REST_PORTS": " ".join(str(n.rest_port) for n in self.nodes),
            "HA_ETCD_PORT": str(free_port()),
            "HA_ETCD_PEER_PORT": str(free_port()),
            "HA_TTL": str(ttl),
            "HA_LOOP_WAIT": str(loop_wait),
            "HA_RETRY_TIMEOUT": str(retry_timeout),
            "TOOLREG": TOOLREG,
        }
        self.ttl, self.loop_wait = ttl, loop_wait
        self.dsn = ""
        self.registry_urls: list[str] = []
        self.up_seconds = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    def up(self, timeout: float = 180) -> None:
        """Start etcd and the nodes, create and migrate the registry's database."""
        started = time.monotonic()
        done = subprocess.run(
            [str(DEPLOY / "up")],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"deploy/ha/up failed:\n{done.stderr}\n{self.logs()}")
        self.dsn = done.stdout.strip().splitlines()[-1].removeprefix("DATABASE_URL=")
        env = dict(
            line.split("=", 1) for line in (self.root / "env").read_text().splitlines() if line
        )
        assert env["DATABASE_URL"] == self.dsn
        self.registry_urls = env.get("REGISTRY_URLS", "").strip('"').split()
        self.up_seconds = time.monotonic() - started

    def down(self, purge: bool = True) -> None:
        args = [str(DEPLOY / "down")] + (["--purge"] if purge else [])
        subprocess.run(args, env=self.env, capture_output=True, timeout=120, check=False)

    def logs(self, lines: int = 40) -> str:
        """The tail of every node's Patroni log, for failure messages."""
        out = []
        for node in self.nodes:
            log = node.dir / "patroni.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {node.name} ---\n" + "\n".join(tail))
        return "\n".join(out)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    # -- state ---------------------------------------------------------------------------

    async def member(self, node: Node) -> dict[str, Any] | None:
        """Patroni's view of ``node`` (GET /patroni), or ``None`` when it does not answer."""
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                response = await http.get(node.rest + "/patroni")
        except httpx.TransportError:
            return None
        data: dict[str, Any] = response.json()
        return data

    async def primary(self) -> Node | None:
        """The node whose PostgreSQL runs as the primary now, if any."""
        for node in self.nodes:
            member = await self.member(node)
            role, state = (member or {}).get("role"), (member or {}).get("state")
            if role in ("master", "primary") and state == "running":
                return node
        return None

    async def the_primary(self) -> Node:
        """:meth:`primary`, which the test needs there to be (AssertionError if there is none)."""
        node = await self.primary()
        assert node is not None, "the cluster has no primary"
        return node

    async def wait_healthy(self, timeout: float = 120) -> Node:
        """Wait until every node runs, one is primary and another its synchronous standby."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                states = []
                for node in self.nodes:
                    try:
                        primary = (await http.get(node.rest + "/primary")).status_code == 200
                        sync = (await http.get(node.rest + "/sync")).status_code == 200
                        replica = (await http.get(node.rest + "/replica")).status_code == 200
                    except httpx.TransportError:
                        primary = sync = replica = False
                    states.append((node, primary, sync, replica))
                primaries = [n for n, p, _, _ in states if p]
                syncs = [n for n, _, s, _ in states if s]
                replicas = [n for n, _, _, r in states if r]
                if len(primaries) == 1 and syncs and len(replicas) == len(self.nodes) - 1:
                    return primaries[0]
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"cluster not healthy within {timeout:g}s: "
                        f"{[(n.name, p, s, r) for n, p, s, r in states]}\n{self.logs()}"
                    )
                await asyncio.sleep(0.2)

    async def timeline(self, node: Node) -> int | None:
        member = await self.member(node)
        return int(member["timeline"]) if member and "timeline" in member else None

    # -- faults ---------------------------------------------------------------------------

    def kill_node(self, node: Node) -> None:
        """The machine is lost: SIGKILL its Patroni, its postmaster and every backend at once."""
        patroni = node.patroni_pid()
        postmaster = node.postmaster_pid()
        assert patroni is not None and postmaster is not None, f"{node.name} is not running"
        group = os.getpgid(postmaster)
        # Patroni starts the postmaster in a session of its own (from a helper process
        # that exits): that process group is the postmaster and every backend.
        assert group != os.getpgid(0) and group != os.getpgid(patroni)
        os.kill(patroni, signal.SIGKILL)
        os.killpg(group, signal.SIGKILL)

    def kill_postmaster(self, node: Node) -> int:
        """SIGKILL the postmaster alone (Patroni restarts it in place); returns its pid."""
        postmaster = node.postmaster_pid()
        assert postmaster is not None, f"{node.name} has no postmaster"
        os.kill(postmaster, signal.SIGKILL)
        return postmaster

    async def start_node(self, node: Node) -> None:
        """Start the node's Patroni again (``deploy/ha/start-node``): it rejoins as a replica."""
        await run_command(self.env, str(DEPLOY / "start-node"), node.name.removeprefix("node"))

    async def switchover(self, leader: Node, candidate: Node) -> None:
        """A planned switchover with ``patronictl`` (returns once Patroni reports it done)."""
        config = str(self.nodes[0].dir / "patroni.yml")
        await run_command(
            self.env,
            *("patronictl", "-c", config, "switchover", "--leader", leader.name),
            *("--candidate", candidate.name, "--force"),
        )


async def run_command(env: dict[str, str], *argv: str, timeout: float = 60) -> str:
    """Run a command without blocking the event loop (the load goes on meanwhile)."""
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(timeout):
        out, _ = await process.communicate()
    text = out.decode(errors="replace")
    assert process.returncode == 0, f"{argv}: exit {process.returncode}\n{text}"
    return text
