"""The leader's active checks, scheduled per tool rather than in passes.

Each tool with a ``health_endpoint`` has its own due time: its next check is
due ``TOOLREG_CHECK_INTERVAL_SECONDS`` after its previous one began. At most
``TOOLREG_CHECK_CONCURRENCY`` probes are in flight; a probe's timeout holds up
only its own tool. Results are stored as they arrive (those that arrive while
a write is in flight go together in the next statement), with the anti-flap
rule and the conditional, fenced write of :class:`HealthChecker`.

Detection must not depend on how many other tools hang, so tools are served
in two lanes. A *suspect* tool (``critical``, or whose last probe got no
answer within the timeout) may hold at most half of the probe slots, and
among suspects a tool not yet critical goes first; every other tool is served
first from all the slots. Hundreds of hanging tools thus share half of the
slots (each is checked less often than its interval once they outnumber
them), while a healthy tool that starts failing keeps being checked on time
until the anti-flap rule turns it critical.

A tool whose heartbeat is past the TTL is unroutable whatever its checks say,
so it is not probed at all; it is checked again (its state kept) as soon as a
heartbeat makes it fresh. The list of tools, their endpoints, check states
and freshness is read again every check interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import math
import os
import time
import zlib
from dataclasses import dataclass, replace
from typing import Any

from omninode_bridge.errors import OmniNodeBridgeError
from omninode_bridge.liveness.checker import (
    AntiFlap,
    CheckResult,
    CheckState,
    CheckStatus,
    HealthChecker,
    transition,
)
from omninode_bridge.liveness.leader import Fence, LeadershipLostError
from omninode_bridge.liveness.probe import ProbeResult, probe
from omninode_bridge.models.timestamps import iso_time
from omninode_bridge.services.discovery.endpoints import Template, TemplateTable
from omninode_bridge.services.sql import load_queries

__all__ = ["CheckScheduler"]

logger = logging.getLogger(__name__)
Q = load_queries("liveness.sql")
SCHEDULE_PAGE = 20_000  # tools per query when the scheduler reads the tools to check


@functools.lru_cache(maxsize=1024)
def _state(status: CheckStatus, failures: int, successes: int) -> CheckState:
    """A check state, one object per value (a million targets share a few)."""
    return CheckState(status, failures, successes)


@dataclass(slots=True, eq=False)
class _Target:
    tool_id: str
    where: str | Template | None  # the health endpoint; see CheckScheduler._compact
    state: CheckState
    generation: int
    fresh: bool
    due: float = math.inf  # monotonic seconds
    token: int = 0  # the valid heap entry carries this
    busy: bool = False  # a probe or a write of this tool is under way
    started: float = 0.0
    hung: bool = False  # the last probe got no answer within the timeout

    @property
    def url(self) -> str | None:
        """The health endpoint's URL (``None``: it has none any more)."""
        where = self.where
        return where.url(self.tool_id, "") if isinstance(where, Template) else where

    @property
    def suspect(self) -> bool:
        return self.hung or self.state.status is CheckStatus.CRITICAL

    @property
    def critical(self) -> bool:
        return self.state.status is CheckStatus.CRITICAL


class CheckScheduler:
    """Runs one leader's checks with ``checker``'s settings, HTTP client and store."""

    def __init__(self, checker: HealthChecker) -> None:
        settings = checker.settings
        self.checker = checker
        self.interval = settings.check_interval_seconds
        self.timeout = settings.check_timeout_seconds
        self.concurrency = settings.check_concurrency
        self.suspect_slots = max(1, settings.check_concurrency // 2)
        self.ttl = float(settings.ttl_seconds)
        self._targets: dict[str, _Target] = {}
        self._urls = TemplateTable()  # the health endpoints' shared patterns
        self._normal: list[tuple[float, int, str]] = []
        self._suspects: list[tuple[bool, float, int, str]] = []  # not critical first
        self._tokens = 0
        self._in_flight = 0
        self._suspects_in_flight = 0
        self._pending: list[tuple[_Target, ProbeResult | None]] = []
        self._wake = asyncio.Event()
        self._flush = asyncio.Event()

    async def run(self, fence: Fence) -> None:
        """Check tools as they fall due, until cancelled (one leadership term)."""
        self._targets.clear()
        self._normal.clear()
        self._suspects.clear()
        self._pending.clear()
        probes: set[asyncio.Task[None]] = set()
        writer = asyncio.create_task(self._write_forever(fence), name="toolreg-check-writer")
        next_reload = -math.inf
        first = True
        try:
            while True:
                if not fence.valid():  # see LivenessRunner._every
                    await asyncio.sleep(0.05)
                    continue
                if time.monotonic() >= next_reload:
                    await self._reload(spread=first)
                    first = False
                    next_reload = time.monotonic() + self.interval
                self._wake.clear()  # before dispatching: a later completion wakes us
                self._dispatch(probes)
                wait = min(next_reload, self._next_due()) - time.monotonic()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._wake.wait()
        finally:
            writer.cancel()
            for task in probes:
                task.cancel()
            await asyncio.gather(writer, *probes, return_exceptions=True)
            self._in_flight = self._suspects_in_flight = 0
            self.checker.metrics.checks_in_flight.set(0)

    # -- the schedule -----------------------------------------------------------------

    def _schedule(self, target: _Target, due: float) -> None:
        """Make ``target`` due at ``due`` (a new heap entry; older ones become invalid)."""
        self._tokens += 1
        target.due, target.token = due, self._tokens
        if target.where is None or not target.fresh or target.busy:
            return
        if target.suspect:
            heapq.heappush(self._suspects, (target.critical, due, self._tokens, target.tool_id))
        else:
            heapq.heappush(self._normal, (due, self._tokens, target.tool_id))

    def _valid(self, token: int, tool_id: str, suspect: bool) -> _Target | None:
        target = self._targets.get(tool_id)
        if target is None or target.token != token or target.busy or target.suspect != suspect:
            return None
        return target

    def _head_normal(self) -> tuple[float, _Target] | None:
        while self._normal:
            due, token, tool_id = self._normal[0]
            target = self._valid(token, tool_id, suspect=False)
            if target is not None:
                return due, target
            heapq.heappop(self._normal)
        return None

    def _head_suspect(self) -> tuple[float, _Target] | None:
        while self._suspects:
            _, due, token, tool_id = self._suspects[0]
            target = self._valid(token, tool_id, suspect=True)
            if target is not None:
                return due, target
            heapq.heappop(self._suspects)
        return None

    def _next_due(self) -> float:
        """When the next probe can start (``inf``: when a running one ends)."""
        best = math.inf
        if self._in_flight >= self.concurrency:
            return best
        if (head := self._head_normal()) is not None:
            best = head[0]
        if self._suspects_in_flight < self.suspect_slots and (head := self._head_suspect()):
            best = min(best, head[0])
        return best

    def _pop_due(self, now: float, *, suspect: bool) -> tuple[float, _Target] | None:
        """The head of the normal or suspect queue, taken off it, if it is due by ``now``."""
        head = self._head_suspect() if suspect else self._head_normal()
        if head is None or head[0] > now:
            return None
        if suspect:
            heapq.heappop(self._suspects)
        else:
            heapq.heappop(self._normal)
        return head

    def _dispatch(self, probes: set[asyncio.Task[None]]) -> None:
        now = time.monotonic()
        while self._in_flight < self.concurrency:
            head = self._pop_due(now, suspect=False)
            if head is None and self._suspects_in_flight < self.suspect_slots:
                head = self._pop_due(now, suspect=True)
            if head is None:
                return
            due, target = head
            self._start(target, due, now, probes)

    def _start(
        self, target: _Target, due: float, now: float, probes: set[asyncio.Task[None]]
    ) -> None:
        target.busy = True
        target.started = now
        suspect = target.suspect
        self._in_flight += 1
        self._suspects_in_flight += suspect
        metrics = self.checker.metrics
        metrics.checks_in_flight.set(self._in_flight)
        metrics.check_delay.observe(max(0.0, now - due))
        task = asyncio.create_task(self._probe(target, suspect))
        probes.add(task)
        task.add_done_callback(probes.discard)

    async def _probe(self, target: _Target, suspect: bool) -> None:
        url = target.url
        assert url is not None
        try:
            result = await probe(self.checker.http, url, timeout=self.timeout)
        finally:
            self._in_flight -= 1
            self._suspects_in_flight -= suspect
            self.checker.metrics.checks_in_flight.set(self._in_flight)
            self._wake.set()
        self._pending.append((target, result))
        self._flush.set()

    # -- reading the tools --------------------------------------------------------------

    async def _reload(self, *, spread: bool) -> None:
        """Read every tool to check again, a page of ``SCHEDULE_PAGE`` at a time (one
        query of a million rows outlived its timeout and held them all at once); each
        page updates the targets as it comes. Targets of tools gone are dropped only
        after a complete read: a failed page leaves them for the next reload."""
        seen: set[str] = set()
        after = ""
        while True:
            try:
                rows = await self.checker.client.fetch(
                    Q["check_schedule"], self.ttl, after, SCHEDULE_PAGE
                )
            except OmniNodeBridgeError as exc:
                self.checker.metrics.pass_errors.labels("check").inc()
                logger.warning("health checks: reading the tools failed (next in %gs): %s",
                               self.interval, exc)  # fmt: skip
                self._count()
                return
            self._update(rows, seen, spread=spread)
            if len(rows) < SCHEDULE_PAGE:
                break
            after = rows[-1]["tool_id"]
        for tool_id in [t for t in self._targets if t not in seen]:
            del self._targets[tool_id]
        self._count()

    def _compact(self, tool_id: str, url: str | None) -> str | Template | None:
        """``url`` as a target keeps it: a URL that holds the tool's id (most do:
        ``http://<id>.svc:8080/health``) as a :class:`Template` shared by every tool
        of its pattern, any other as it is. A million targets hold a few templates,
        not a million strings."""
        if url is None or tool_id not in url:
            return url
        template = self._urls.encode(tool_id, ("",), {"": url})
        return template if isinstance(template, Template) else url

    def _update(self, rows: list[Any], seen: set[str], *, spread: bool) -> None:
        """Bring the targets of one page of ``check_schedule`` up to date."""
        now = time.monotonic()
        for row in rows:
            tool_id, url, fresh = row["tool_id"], row["health_endpoint"], bool(row["fresh"])
            seen.add(tool_id)
            state = _state(CheckStatus(row["check_status"]), row["failures"], row["successes"])
            target = self._targets.get(tool_id)
            if target is None:
                target = _Target(
                    tool_id, self._compact(tool_id, url), state, row["generation"], fresh
                )
                self._targets[tool_id] = target
                # A new term spreads its first checks over an interval (no burst, no phase lock).
                offset = (zlib.crc32(tool_id.encode()) % 1000) / 1000 * self.interval
                self._schedule(target, now + offset if spread else now)
            else:
                lane = (target.suspect, target.critical)
                if row["generation"] > target.generation:  # another writer moved it
                    target.state, target.generation = state, row["generation"]
                back = fresh and not target.fresh
                moved = url != target.url
                if moved:
                    target.where = self._compact(tool_id, url)
                target.fresh = fresh
                if back or moved:
                    self._schedule(target, now)
                elif lane != (target.suspect, target.critical):
                    self._schedule(target, target.due)
            if url is None and target.state != AntiFlap.unchecked() and not target.busy:
                target.busy = True  # its endpoint went: reset to unknown, through the writer
                self._pending.append((target, None))
                self._flush.set()

    def _count(self) -> None:
        counts = {"checked": 0, "suspect": 0, "stale": 0}
        for target in self._targets.values():
            if target.where is None:
                continue
            counts["stale" if not target.fresh else "suspect" if target.suspect else "checked"] += 1
        for state, n in counts.items():
            self.checker.metrics.check_tools.labels(state).set(n)

    # -- storing the results ---------------------------------------------------------------

    async def _write_forever(self, fence: Fence) -> None:
        while True:
            await self._flush.wait()
            if not fence.valid():  # see LivenessRunner._every; the results wait
                await asyncio.sleep(0.05)
                continue
            self._flush.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._write(batch, fence)

    async def _write(self, batch: list[tuple[_Target, ProbeResult | None]], fence: Fence) -> None:
        checker, metrics = self.checker, self.checker.metrics
        writes: list[tuple[CheckResult, int]] = []
        for target, result in batch:
            before = target.state
            after = (
                AntiFlap.unchecked()
                if result is None
                else checker.policy.advance(before, result.ok)
            )
            kind = transition(before.status, after.status)
            result_of = CheckResult(target.tool_id, target.url, before, after, result, kind, False)
            writes.append((result_of, target.generation))
        pid, start = os.getpid(), time.time()
        logger.debug("liveness pass begins kind=check pid=%d start=%s", pid, iso_time(start))
        recorded: set[str] = set()
        try:
            recorded = await checker.store(writes, fence)
        except LeadershipLostError as exc:
            metrics.pass_errors.labels("check").inc()
            logger.warning("health checks: %s", exc)
        except OmniNodeBridgeError as exc:
            metrics.pass_errors.labels("check").inc()
            logger.warning("health checks: storing %d results failed: %s", len(writes), exc)
        else:
            metrics.passes.labels("check").inc()
        logger.debug(
            "liveness pass kind=check pid=%d start=%s end=%s",
            pid,
            iso_time(start),
            iso_time(time.time()),
        )
        now = time.monotonic()
        stored = []
        for (result_of, generation), (target, result) in zip(writes, batch, strict=True):
            done = result_of.tool_id in recorded
            if done:
                target.state, target.generation = result_of.after, generation + 1
            if result is not None:
                target.hung = result.timed_out
            target.busy = False
            stored.append(replace(result_of, recorded=done))
            if self._targets.get(target.tool_id) is target:
                self._schedule(target, max(target.started + self.interval, now))
        checker.observe(stored)
        self._wake.set()
