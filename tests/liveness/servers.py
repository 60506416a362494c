"""Real ``toolreg serve`` processes for the replica tests, logging to a file each.

Unlike tests/api's helper, output goes to a file, not a pipe: at debug level a
server writes more than a pipe holds, and a full pipe would stall it.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import TOOLREG, clean_env, free_port, terminate, wait_until_healthy

__all__ = ["Pass", "ServerProcess", "leader_gauge", "parse_log", "spawn", "stop"]

_BEGIN = re.compile(r"liveness pass begins kind=(\w+) pid=(\d+) start=([\d.]+)")
_END = re.compile(r"liveness pass kind=(\w+) pid=(\d+) start=([\d.]+) end=([\d.]+)")
_ELECTED = re.compile(r"liveness leader elected: .*\bt=([\d.]+)")


@dataclass
class ServerProcess:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def spawn(dsn: str, log: Path, env: dict[str, str]) -> ServerProcess:
    """Start a server at debug level on a free port; returns once /health answers (60 s)."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [TOOLREG, "serve", "--port", str(port), "--log-level", "debug"],
            env=clean_env(DATABASE_URL=dsn, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
    wait_until_healthy(process, server.base_url, log.read_text)
    return server


def stop(server: ServerProcess) -> None:
    terminate(server.process)


async def leader_gauge(client: httpx.AsyncClient, server: ServerProcess) -> float | None:
    """``toolreg_liveness_leader`` of a live server (``None`` when it does not answer)."""
    try:
        text = (await client.get(server.base_url + "/metrics", timeout=2)).text
    except httpx.TransportError:
        return None
    match = re.search(r"^toolreg_liveness_leader ([\d.]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


@dataclass(frozen=True)
class Pass:
    kind: str
    pid: int
    start: float
    end: float | None  # None: begun, never finished (the process died)


def parse_log(log: Path) -> tuple[list[Pass], list[float]]:
    """The passes a server logged, and the wall-clock times it was elected leader."""
    passes: dict[tuple[str, int, str], Pass] = {}
    elected = []
    for line in log.read_text(errors="replace").splitlines():
        if m := _END.search(line):
            key = (m.group(1), int(m.group(2)), m.group(3))
            passes[key] = Pass(m.group(1), int(m.group(2)), float(m.group(3)), float(m.group(4)))
        elif m := _BEGIN.search(line):
            key = (m.group(1), int(m.group(2)), m.group(3))
            passes.setdefault(key, Pass(m.group(1), int(m.group(2)), float(m.group(3)), None))
        elif m := _ELECTED.search(line):
            elected.append(float(m.group(1)))
    return sorted(passes.values(), key=lambda p: p.start), elected
