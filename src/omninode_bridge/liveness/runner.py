"""LivenessRunner: leader election and, while leading, the reaper and the health checks.

The server starts one per process. Every replica campaigns (see leader.py);
only the leader works: a reaper pass every ``TOOLREG_REAP_INTERVAL_SECONDS``,
starting at once on election, and the per-tool check schedule (scheduler.py).
A failed pass is logged and counted, and the next one runs on schedule. No
work begins while the leader's own deadline (its last lease renewal plus the
lease) has passed: a leader waking from a freeze renews first, and steps
down when that fails.

Each reaper pass, and each statement that stores check results, is logged at
debug level when it begins and when it ends, with the process id and
wall-clock times (``liveness pass kind=... pid=... start=... end=...``), so
that overlapping passes of two processes would show.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry

from omninode_bridge.errors import OmniNodeBridgeError
from omninode_bridge.liveness.checker import HealthChecker
from omninode_bridge.liveness.leader import Fence, LeaderElection
from omninode_bridge.liveness.metrics import LivenessMetrics
from omninode_bridge.liveness.probe import make_check_client
from omninode_bridge.liveness.reaper import Reaper
from omninode_bridge.liveness.scheduler import CheckScheduler
from omninode_bridge.models.timestamps import iso_time
from omninode_bridge.services.postgres_client import PostgresClient
from omninode_bridge.services.tool_registration_repository import ToolRegistrationRepository
from omninode_bridge.settings import Settings
from omninode_bridge.tasks import cancel_and_wait

__all__ = ["LivenessRunner"]

logger = logging.getLogger(__name__)


class LivenessRunner:
    """Campaigns for leadership on ``client``'s database and runs the passes while leading.

    ``metrics_registry`` receives the liveness metrics (the server passes its
    own, so they show on ``/metrics``). Use ``await start()`` and
    ``await aclose()``; closing ends the session that holds the lock, so a
    replica takes over at once.
    """

    def __init__(
        self,
        client: PostgresClient,
        repository: ToolRegistrationRepository,
        settings: Settings,
        metrics_registry: CollectorRegistry,
    ) -> None:
        self.client = client
        self.repository = repository
        self.settings = settings
        self.metrics = LivenessMetrics(metrics_registry)
        self.http = make_check_client(settings)
        self.reaper = Reaper(client, settings, self.metrics)
        self.checker = HealthChecker(client, settings, self.http, self.metrics)
        self.scheduler = CheckScheduler(self.checker)
        self.interval = min(settings.reap_interval_seconds, settings.check_interval_seconds)
        self.election: LeaderElection | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self.election is not None and self.election.is_leader

    async def start(self) -> None:
        """Begin campaigning in the background (the client must be connected)."""
        if self._task is not None:
            return
        self.election = LeaderElection(
            self.client.dsn,
            interval=self.interval,
            lease=self.settings.leader_lease,
            connect_timeout=self.settings.connect_timeout,
            metrics=self.metrics,
        )
        self._task = asyncio.create_task(self.election.run(self._lead), name="toolreg-liveness")

    async def aclose(self) -> None:
        """Stop leading or campaigning, release the lock, close the HTTP client.

        The metrics leave the registry too, so a new runner can register them again.
        """
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.http.aclose()
        self.metrics.unregister()

    async def _lead(self, fence: Fence) -> None:
        s = self.settings
        async with asyncio.TaskGroup() as group:
            group.create_task(
                self._every("reap", s.reap_interval_seconds, fence, lambda: self._reap(fence))
            )
            group.create_task(self.scheduler.run(fence), name="toolreg-checks")

    async def _reap(self, fence: Fence) -> None:
        await self.reaper.run_pass(fence=fence)

    async def _every(
        self, kind: str, interval: float, fence: Fence, run: Callable[[], Awaitable[None]]
    ) -> None:
        pid = os.getpid()
        while True:
            if not fence.valid():
                # Past the lease by this process's own clock (it was frozen, or
                # renewals stall): no work until a renewal succeeds, or the
                # election steps down and cancels this task.
                await asyncio.sleep(min(interval, 0.05))
                continue
            began = time.monotonic()
            start = time.time()
            logger.debug("liveness pass begins kind=%s pid=%d start=%s", kind, pid, iso_time(start))
            try:
                await run()
            except OmniNodeBridgeError as exc:
                self.metrics.pass_errors.labels(kind).inc()
                logger.warning("liveness %s pass failed (next in %gs): %s", kind, interval, exc)
            except Exception:  # a bug in one pass must not stop the next ones
                self.metrics.pass_errors.labels(kind).inc()
                logger.exception("liveness %s pass failed (next in %gs)", kind, interval)
            else:
                self.metrics.passes.labels(kind).inc()
            logger.debug(
                "liveness pass kind=%s pid=%d start=%s end=%s",
                kind,
                pid,
                iso_time(start),
                iso_time(time.time()),
            )
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))
