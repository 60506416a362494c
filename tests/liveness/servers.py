"""Real ``toolreg serve`` processes for the replica tests, at debug level, logging to a
file each (started by :func:`tests.support.start_server`), and what their logs say."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import (
    LEADER_ELECTED,
    PASS_BEGINS,
    PASS_ENDED,
    log_time,
    metric_value,
    start_server,
    terminate,
)

__all__ = ["Pass", "ServerProcess", "leader_gauge", "parse_log", "spawn", "stop"]


@dataclass
class ServerProcess:
    base_url: str
    process: subprocess.Popen[str]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def spawn(dsn: str, log: Path, env: dict[str, str]) -> ServerProcess:
    """Start a server at debug level on a free port; returns once /health answers (60 s)."""
    server = start_server(dsn, env=env, log_level="debug", log_path=log)
    server.log.close()  # the process keeps its own descriptor; the log is read by path
    return ServerProcess(server.base_url, server.process, log)


def stop(server: ServerProcess) -> None:
    terminate(server.process)


async def leader_gauge(client: httpx.AsyncClient, server: ServerProcess) -> float | None:
    """``toolreg_liveness_leader`` of a live server (``None`` when it does not answer)."""
    try:
        text = (await client.get(server.base_url + "/metrics", timeout=2)).text
    except httpx.TransportError:
        return None
    return metric_value(text, "toolreg_liveness_leader")


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
        if m := PASS_ENDED.search(line):
            key = (m.group(1), int(m.group(2)), m.group(3))
            start, end = log_time(m.group(3)), log_time(m.group(4))
            passes[key] = Pass(m.group(1), int(m.group(2)), start, end)
        elif m := PASS_BEGINS.search(line):
            key = (m.group(1), int(m.group(2)), m.group(3))
            passes.setdefault(key, Pass(m.group(1), int(m.group(2)), log_time(m.group(3)), None))
        elif m := LEADER_ELECTED.search(line):
            elected.append(log_time(m.group(2)))
    return sorted(passes.values(), key=lambda p: p.start), elected
