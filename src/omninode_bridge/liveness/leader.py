"""One leader among replicas: a PostgreSQL session advisory lock on a dedicated connection.

Every ``toolreg serve`` process runs a :class:`LeaderElection`. Each opens one
connection of its own (never from the pool: a session lock must live exactly
as long as the session that holds it) and waits for the lock with
``pg_advisory_lock`` in slices of ``lock_timeout``. PostgreSQL grants it to one
session at a time, so two leaders are impossible; when the leader's process
dies, its backend sees the socket close, ends, and the lock passes to the next
waiter at once (no polling delay). A waiter whose slice runs out simply waits
again: the slice doubles as a check that its own connection still works.

The leader probes its connection every ``interval``; on a failed probe or a
closed connection it steps down (cancels its work) and starts over. Server-side
TCP keepalives end a leader's session that went silent (a partition, a host
gone) after about ``2 * interval + 3`` seconds, later than the leader's own
step-down. Writes of the leader's passes are fenced as well (``Fence``): they
take effect only while its backend still holds the lock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import asyncpg

from omninode_bridge.errors import OmniNodeBridgeError, RegistryUnavailableError
from omninode_bridge.liveness.metrics import LivenessMetrics
from omninode_bridge.services.db_errors import translate
from omninode_bridge.services.postgres_client import describe_dsn
from omninode_bridge.services.sql import load_queries

__all__ = [
    "LIVENESS_LOCK_KEY",
    "Fence",
    "LeaderElection",
    "LeadershipLostError",
    "fence_args",
    "fenced_ids",
]

logger = logging.getLogger(__name__)
Q = load_queries("liveness.sql")
# Key of the advisory lock held by the liveness leader ("toollive").
LIVENESS_LOCK_KEY = 0x746F6F6C_6C697665
Lead = Callable[["Fence"], Coroutine[Any, Any, None]]
_DRIVER_ERRORS = (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


@dataclass(frozen=True, slots=True)
class Fence:
    """The leader's credential: the backend ``pid`` that holds the advisory lock ``key``."""

    pid: int
    key: int = LIVENESS_LOCK_KEY


class LeadershipLostError(OmniNodeBridgeError):
    """A fenced write found that its leader no longer holds the lock: nothing was written."""


def fenced_ids(row: asyncpg.Record | None, what: str) -> list[str]:
    """The ids a fenced statement changed; raises LeadershipLostError if its fence failed."""
    assert row is not None  # every fenced statement answers one row
    if not row["leading"]:
        raise LeadershipLostError(f"{what}: this process no longer leads; nothing was written")
    return list(row["tool_ids"])


def fence_args(fence: Fence | None) -> tuple[int | None, int]:
    """The ``(pid, key)`` bind parameters of a fenced statement; no fence: ``(None, key)``."""
    if fence is None:
        return None, LIVENESS_LOCK_KEY
    return fence.pid, fence.key


class LeaderElection:
    """Campaigns for the liveness lock forever and runs ``lead(fence)`` while holding it.

    ``interval`` bounds how long a lost connection goes unnoticed by the
    leader, and how long a waiter's lock wait lasts before it checks its own
    connection. ``is_leader`` and the ``toolreg_liveness_leader`` gauge say
    whether this process leads now.
    """

    def __init__(
        self,
        dsn: str,
        *,
        interval: float,
        connect_timeout: float,
        metrics: LivenessMetrics,
        key: int = LIVENESS_LOCK_KEY,
        retry_delay: float | None = None,
    ) -> None:
        self.dsn = dsn
        self.interval = interval
        self.connect_timeout = connect_timeout
        self.metrics = metrics
        self.key = key
        self.retry_delay = retry_delay if retry_delay is not None else min(interval, 1.0)
        self._fence: Fence | None = None
        self._where = describe_dsn(dsn)

    @property
    def is_leader(self) -> bool:
        return self._fence is not None

    @property
    def fence(self) -> Fence | None:
        """The current leadership's fence; ``None`` while not leading."""
        return self._fence

    async def run(self, lead: Lead) -> None:
        """Campaign, lead, step down and campaign again, until cancelled.

        ``lead`` runs as a task while this process holds the lock and is
        cancelled when it loses it; it is expected to run until cancelled.
        """
        failures = 0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                await self._acquire(conn)
                failures = 0
                await self._hold(conn, lead)
            except OmniNodeBridgeError as exc:
                failures += 1
                logger.warning("liveness leader election: %s; retrying", exc)
            except Exception:  # a bug must not end the election for good; retried
                failures += 1
                logger.exception("liveness leader election failed; retrying")
            finally:
                self._step_down()
                if conn is not None:
                    await self._close(conn)
            # Back off while the database stays out of reach, up to one interval.
            await asyncio.sleep(min(self.interval, self.retry_delay * 2 ** min(failures, 16)))

    def _server_settings(self) -> dict[str, str]:
        millis = max(1, math.ceil(self.interval * 1000))
        keepalive_idle = max(1, math.ceil(2 * self.interval))
        return {
            "application_name": "omninode-bridge-leader",
            "lock_timeout": f"{millis}ms",
            "statement_timeout": "0",
            "idle_session_timeout": "0",
            # A waiter whose client vanished gives up its place in the lock queue.
            "client_connection_check_interval": f"{min(millis, 1000)}ms",
            # Ignored on Unix sockets, where a dead client's socket closes at once.
            "tcp_keepalives_idle": str(keepalive_idle),
            "tcp_keepalives_interval": "1",
            "tcp_keepalives_count": "3",
        }

    async def _connect(self) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(
                self.dsn,
                timeout=self.connect_timeout,
                command_timeout=None,
                statement_cache_size=0,
                server_settings=self._server_settings(),
            )
        except (*_DRIVER_ERRORS, ValueError) as exc:
            raise translate(exc, self._where) from exc

    async def _acquire(self, conn: asyncpg.Connection) -> None:
        # Each wait is bounded by lock_timeout server-side and by a client-side
        # timeout a little longer, in case the server itself went silent.
        while True:
            try:
                await conn.fetchval(
                    Q["lead"], self.key, timeout=self.interval + self.connect_timeout
                )
                return
            except asyncpg.LockNotAvailableError:
                continue  # another process leads; wait again
            except _DRIVER_ERRORS as exc:
                raise translate(exc, self._where) from exc

    async def _probe(self, conn: asyncpg.Connection, pid: int) -> None:
        try:
            seen = await conn.fetchval(Q["probe"], timeout=self.interval)
        except _DRIVER_ERRORS as exc:
            raise translate(exc, self._where) from exc
        if seen != pid:
            raise RegistryUnavailableError(f"leader session on {self._where} was replaced")

    async def _hold(self, conn: asyncpg.Connection, lead: Lead) -> None:
        pid = conn.get_server_pid()
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        self._fence = Fence(pid, self.key)
        self.metrics.leader.set(1)
        self.metrics.leader_changes.inc()
        logger.info("liveness leader elected: backend pid %d, t=%.6f", pid, time.time())
        work = asyncio.create_task(lead(self._fence), name="toolreg-liveness-lead")
        lost_wait = asyncio.create_task(lost.wait())
        work_raised = False
        try:
            while True:
                done, _ = await asyncio.wait(
                    {work, lost_wait}, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED
                )
                if work in done:
                    work_raised = True
                    work.result()  # raises what ended the work
                    raise RuntimeError("liveness work ended while leading")
                if lost_wait in done:
                    raise RegistryUnavailableError(f"leader connection to {self._where} closed")
                await self._probe(conn, pid)
        finally:
            self._step_down()  # first: nothing may believe it leads any more
            work.cancel()
            lost_wait.cancel()
            await asyncio.wait({work, lost_wait})
            if not work_raised and not work.cancelled() and work.exception() is not None:
                logger.error(
                    "liveness work had failed as leadership ended", exc_info=work.exception()
                )

    def _step_down(self) -> None:
        if self._fence is not None:
            logger.info(
                "liveness leader stepped down: backend pid %d, t=%.6f", self._fence.pid, time.time()
            )
        self._fence = None
        self.metrics.leader.set(0)

    async def _close(self, conn: asyncpg.Connection) -> None:
        # Closing the session releases the lock at once, so a waiting replica
        # takes over without waiting for anything.
        try:
            await asyncio.wait_for(conn.close(), timeout=self.connect_timeout)
        except asyncio.CancelledError:
            conn.terminate()
            raise
        except _DRIVER_ERRORS as exc:
            # A connection that already failed cannot close politely: drop it.
            logger.debug("leader connection closed abruptly: %r", exc)
            conn.terminate()
