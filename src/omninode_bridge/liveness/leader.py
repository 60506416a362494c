"""One leader among replicas: a lease the leader renews, fenced by a generation number.

Leadership is the row ``liveness`` of ``liveness_leases``: a generation, a
holder and an expiry, all judged on the database clock. The leader renews it
every ``renew_every`` seconds (the shorter of the liveness interval and a third
of the lease). A leader that stops renewing (dead, stopped by SIGSTOP, stuck,
or cut off from the database) loses leadership when its lease expires: a
replica that finds the lease expired takes it over with the next generation.

Every write of the leader's passes carries its generation (:class:`Fence`)
and takes effect only while that generation holds an unexpired lease, so the
writes of a deposed leader are rejected by the database whatever the leader
believes. The leader also keeps its own deadline on the monotonic clock (the
moment it sent its last successful renewal plus the lease, never later than
the database's expiry): a leader that wakes from a freeze finds its deadline
passed and does no work before it has renewed, which fails once another
generation holds the lease; it then steps down.

The advisory lock stays, for what a lease cannot do: hand over at once. Each
candidate waits for ``pg_advisory_lock`` on a dedicated connection (sliced by
``lock_timeout``), and a lease taken by a lock holder records its backend pid.
When that leader's session ends (the process crashed, was killed, or closed
it), PostgreSQL grants the lock to the next waiter at once, and that waiter may
take the lease at once because its holder no longer holds the lock: takeover
after SIGKILL stays in the milliseconds instead of waiting out the lease. A
frozen leader's session stays open and so does its lock, which is why the
lock alone could stall the cluster: waiters whose slice runs out check the
lease and take it over when it expired, lock or no lock (``holder_pid`` is
then ``NULL``, and only the expiry frees that lease).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from omninode_bridge.errors import (
    LeadershipLostError,
    OmniNodeBridgeError,
    RegistryUnavailableError,
)
from omninode_bridge.liveness.metrics import LivenessMetrics
from omninode_bridge.models.timestamps import iso_time
from omninode_bridge.services.db_errors import translate
from omninode_bridge.services.postgres_client import describe_dsn
from omninode_bridge.services.sql import load_queries

__all__ = [
    "LEASE_NAME",
    "LIVENESS_LOCK_KEY",
    "Fence",
    "LeaderElection",
    "LeadershipLostError",
    "fence_args",
    "fenced_ids",
]

logger = logging.getLogger(__name__)
Q = load_queries("liveness.sql")
# Key of the advisory lock the liveness candidates queue on ("toollive").
LIVENESS_LOCK_KEY = 0x746F6F6C_6C697665
LEASE_NAME = "liveness"
RETRY_MAX_SECONDS = 2.0  # the longest wait between campaigns while the database is away
Lead = Callable[["Fence"], Coroutine[Any, Any, None]]
_DRIVER_ERRORS = (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


class Fence:
    """The leader's credential: the lease ``generation`` its writes carry.

    :meth:`valid` says whether this process may still act as the leader by its
    own monotonic clock (its last renewal plus the lease); the database decides
    for the writes themselves. Equal when generation and name are.
    """

    __slots__ = ("_deadline", "generation", "name")

    def __init__(self, generation: int, name: str = LEASE_NAME, deadline: float = math.inf) -> None:
        self.generation = generation
        self.name = name
        self._deadline = deadline

    def valid(self) -> bool:
        """True until the local deadline (monotonic clock) passes or the term ends."""
        return time.monotonic() < self._deadline

    def remaining(self) -> float:
        """Seconds left before the local deadline (negative once it passed)."""
        return self._deadline - time.monotonic()

    def extend(self, deadline: float) -> None:
        """A renewal succeeded: valid until ``deadline`` (monotonic seconds)."""
        self._deadline = max(self._deadline, deadline)

    def revoke(self) -> None:
        """The term ended: never valid again."""
        self._deadline = -math.inf

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Fence):
            return NotImplemented
        return (self.generation, self.name) == (other.generation, other.name)

    def __hash__(self) -> int:
        return hash((self.generation, self.name))

    def __repr__(self) -> str:
        return f"Fence(generation={self.generation}, name={self.name!r})"


def fenced_ids(row: asyncpg.Record | None, what: str) -> list[str]:
    """The ids a fenced statement changed; raises LeadershipLostError if its fence failed."""
    assert row is not None  # every fenced statement answers one row
    if not row["leading"]:
        raise LeadershipLostError(f"{what}: this process no longer leads; nothing was written")
    return list(row["tool_ids"])


def fence_args(fence: Fence | None) -> tuple[int | None, str]:
    """The ``(generation, name)`` bind parameters of a fenced statement (``None``: unfenced)."""
    if fence is None:
        return None, LEASE_NAME
    return fence.generation, fence.name


class LeaderElection:
    """Campaigns for the liveness lease forever and runs ``lead(fence)`` while holding it.

    ``lease`` is how long leadership outlives the last renewal; renewals come
    every ``renew_every`` seconds (``min(interval, lease / 3)``), which is also
    how often a waiter looks at the lease. ``is_leader`` and the
    ``toolreg_liveness_leader`` gauge say whether this process leads now.
    """

    def __init__(
        self,
        dsn: str,
        *,
        interval: float,
        lease: float,
        connect_timeout: float,
        metrics: LivenessMetrics,
        key: int = LIVENESS_LOCK_KEY,
        name: str = LEASE_NAME,
        retry_delay: float | None = None,
    ) -> None:
        self.dsn = dsn
        self.interval = interval
        self.lease = lease
        self.renew_every = min(interval, lease / 3)
        self.connect_timeout = connect_timeout
        self.metrics = metrics
        self.key = key
        self.name = name
        self.retry_delay = retry_delay if retry_delay is not None else min(interval, 1.0)
        self.holder = f"{socket.gethostname()}:{os.getpid()}"[:255]
        self._fence: Fence | None = None
        self._where = describe_dsn(dsn)

    @property
    def is_leader(self) -> bool:
        return self._fence is not None and self._fence.valid()

    @property
    def fence(self) -> Fence | None:
        """The current leadership's fence; ``None`` while not leading."""
        return self._fence

    async def run(self, lead: Lead) -> None:
        """Campaign, lead, step down and campaign again, until cancelled.

        ``lead`` runs as a task while this process holds the lease and is
        cancelled when it loses it; it is expected to run until cancelled.
        """
        failures = 0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                term = await self._campaign(conn)
                failures = 0
                await self._hold(conn, term, lead)
            except LeadershipLostError as exc:
                logger.warning("liveness leader deposed: %s", exc)
            except OmniNodeBridgeError as exc:
                failures += 1
                logger.warning("liveness leader election: %s; retrying", exc)
            except Exception:  # a bug must not end the election for good; retried
                failures += 1
                logger.exception("liveness leader election failed; retrying")
            finally:
                fence = self._step_down()
                if conn is not None:
                    await self._close(conn, fence)
            # Back off while the database stays out of reach, up to one interval but never
            # past RETRY_MAX_SECONDS: after a failover the promoted primary is campaigned on
            # within seconds, not up to an interval (30 s by default) after it takes writes.
            backoff = self.retry_delay * 2 ** min(failures, 16)
            await asyncio.sleep(min(self.interval, RETRY_MAX_SECONDS, backoff))

    def _server_settings(self) -> dict[str, str]:
        millis = max(1, math.ceil(self.renew_every * 1000))
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

    async def _campaign(self, conn: asyncpg.Connection) -> Fence:
        """Wait for the lock (in slices) and the lease; the fence of the lease taken."""
        locked = False
        while True:
            if not locked:
                try:
                    # Bounded by lock_timeout server-side and by a client-side
                    # timeout a little longer, in case the server went silent.
                    await conn.fetchval(
                        Q["lead"], self.key, timeout=self.renew_every + self.connect_timeout
                    )
                    locked = True
                except asyncpg.LockNotAvailableError:
                    pass  # the slice ran out: look at the lease (a frozen holder)
                except _DRIVER_ERRORS as exc:
                    raise translate(exc, self._where) from exc
            fence = await self._try_lease(conn, locked)
            if fence is not None:
                return fence
            if locked:  # holding the lock while another leads by lease: look again later
                await asyncio.sleep(self.renew_every)

    async def _try_lease(self, conn: asyncpg.Connection, locked: bool) -> Fence | None:
        sent = time.monotonic()
        pid = conn.get_server_pid() if locked else None
        try:
            generation = await conn.fetchval(
                Q["lease_acquire"],
                self.name,
                self.holder,
                self.lease,
                pid,
                self.key,
                timeout=self.lease,
            )
        except asyncpg.LockNotAvailableError:
            # The leader's fenced writes hold the row while they run (lock_timeout
            # of this session ran out): it is held, look again next slice.
            return None
        except _DRIVER_ERRORS as exc:
            raise translate(exc, self._where) from exc
        if generation is None:
            return None
        # The database's expiry is its clock at execution plus the lease, never
        # earlier than this process's send time plus the lease.
        return Fence(int(generation), self.name, sent + self.lease)

    async def _renew(self, conn: asyncpg.Connection, fence: Fence) -> None:
        sent = time.monotonic()
        # Renewals may wait behind fenced writes in flight (they hold the row
        # FOR SHARE). Past the local deadline (a frozen process waking up) the
        # database may still hold the lease (its expiry is never earlier), or
        # answer that it is gone: ask it, briefly.
        budget = max(fence.remaining(), self.renew_every)
        try:
            renewed = await conn.fetchval(
                Q["lease_renew"], fence.name, fence.generation, self.lease, timeout=budget
            )
        except asyncpg.LockNotAvailableError:
            # A long fenced write holds the row past this session's lock_timeout:
            # try again next period, as long as the lease lasts.
            if fence.valid():
                logger.debug("liveness lease renewal waited too long for the row; retrying")
                return
            raise LeadershipLostError(
                f"lease {fence.name!r} generation {fence.generation} could not be renewed "
                "before it ran out; stepping down"
            ) from None
        except _DRIVER_ERRORS as exc:
            if not fence.valid():
                # Whatever failed (a frozen process waking to a timeout, a stalled
                # backend), the lease ran out before it was renewed: this is a
                # deposition, not only an outage, and is told (and counted) as one.
                raise LeadershipLostError(
                    f"lease {fence.name!r} generation {fence.generation} ran out while its "
                    f"renewal failed ({translate(exc, self._where)}); stepping down"
                ) from exc
            raise translate(exc, self._where) from exc
        if renewed is None:
            raise LeadershipLostError(
                f"lease {fence.name!r} generation {fence.generation} expired or was taken over "
                "(the database's clock decides); stepping down"
            )
        fence.extend(sent + self.lease)

    async def _hold(self, conn: asyncpg.Connection, fence: Fence, lead: Lead) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        self._fence = fence
        self.metrics.leader.set(1)
        self.metrics.lease_generation.set(fence.generation)
        self.metrics.leader_changes.inc()
        logger.info(
            "liveness leader elected: lease generation %d, backend pid %d, t=%s",
            fence.generation,
            conn.get_server_pid(),
            iso_time(time.time()),
        )
        work = asyncio.create_task(lead(fence), name="toolreg-liveness-lead")
        lost_wait = asyncio.create_task(lost.wait())
        work_raised = False
        try:
            while True:
                done, _ = await asyncio.wait(
                    {work, lost_wait},
                    timeout=self.renew_every,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if work in done:
                    work_raised = True
                    work.result()  # raises what ended the work
                    raise RuntimeError("liveness work ended while leading")
                if lost_wait in done:
                    raise RegistryUnavailableError(f"leader connection to {self._where} closed")
                try:
                    await self._renew(conn, fence)
                except LeadershipLostError:
                    self.metrics.deposed.inc()
                    raise
        finally:
            self._step_down()  # first: nothing may believe it leads any more
            work.cancel()
            lost_wait.cancel()
            await asyncio.wait({work, lost_wait})
            if not work_raised and not work.cancelled() and work.exception() is not None:
                logger.error(
                    "liveness work had failed as leadership ended", exc_info=work.exception()
                )

    def _step_down(self) -> Fence | None:
        fence, self._fence = self._fence, None
        if fence is not None:
            fence.revoke()
            logger.info(
                "liveness leader stepped down: lease generation %d, t=%s",
                fence.generation,
                iso_time(time.time()),
            )
        self.metrics.leader.set(0)
        return fence

    async def _close(self, conn: asyncpg.Connection, fence: Fence | None) -> None:
        # Releasing the lease and closing the session (which frees the lock)
        # let a replica take over at once.
        try:
            if fence is not None and not conn.is_closed():
                await conn.execute(
                    Q["lease_release"], fence.name, fence.generation, timeout=self.connect_timeout
                )
            await asyncio.wait_for(conn.close(), timeout=self.connect_timeout)
        except asyncio.CancelledError:
            conn.terminate()
            raise
        except _DRIVER_ERRORS as exc:
            # A connection that already failed cannot close politely: drop it.
            logger.debug("leader connection closed abruptly: %r", exc)
            conn.terminate()
