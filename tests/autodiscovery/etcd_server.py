"""A real etcd (Debian's ``etcd-server``, ``/usr/bin/etcd``) on free loopback ports.

Used by the tests' fixtures and by ``benchmarks/bench_etcd.py``. Each server
has its own temporary data dir; ``stop()`` and ``start()`` again keep the data
(an etcd restart), ``kill()`` is SIGKILL. Elections are tuned short so that a
single member is ready in well under a second; the shortest lease etcd then
grants is one second.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import httpx

from tests.support import free_port

__all__ = ["ETCDCTL_BINARY", "ETCD_BINARY", "EtcdServer", "free_port"]

ETCD_BINARY = "/usr/bin/etcd"
ETCDCTL_BINARY = "/usr/bin/etcdctl"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class EtcdServer:
    """One etcd member; ``url`` is its client URL (``http://127.0.0.1:<port>``)."""

    def __init__(self) -> None:
        self.data_root = Path(tempfile.mkdtemp(prefix="toolreg-etcd-", dir="/tmp"))
        self.client_port = free_port()
        self.peer_port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.log_path = self.data_root / "etcd.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def _argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            ETCD_BINARY,
            "--name=toolreg-test",
            f"--data-dir={self.data_root / 'data'}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=toolreg-test={peer}",
            "--heartbeat-interval=20",
            "--election-timeout=200",
            "--logger=zap",
            "--log-outputs=stderr",
        ]

    async def start(self) -> None:
        """Start (or restart on the same data and ports) and wait until it serves."""
        if self.process is not None:
            raise RuntimeError("etcd is already running")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self._argv(), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env
            )
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(timeout=1.0) as http:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"etcd exited at start; see {self.log_path}")
                try:
                    response = await http.get(f"{self.url}/health")
                    if response.status_code == 200 and response.json().get("health") == "true":
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd not healthy within {START_TIMEOUT} s")
                await asyncio.sleep(0.05)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM, then SIGKILL after a bound); the data dir stays for a restart."""
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(sig)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)

    async def kill(self) -> None:
        await self.stop(signal.SIGKILL)

    async def close(self) -> None:
        """Stop it and remove its data dir."""
        await self.stop()
        shutil.rmtree(self.data_root, ignore_errors=True)
