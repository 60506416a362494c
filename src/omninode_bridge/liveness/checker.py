"""Active health checks with anti-flap, stored where every replica sees them.

The anti-flap rule (:class:`AntiFlap`, pure): a tool turns ``critical`` after
``fail_threshold`` consecutive failed checks (default 3) and back to
``passing`` after ``pass_threshold`` consecutive successes (default 2); any
other sequence keeps its status, so fail, fail, pass, fail... never flips. A
tool starts ``passing`` (its registration vouches for it) and a tool without
a ``health_endpoint`` is ``unknown``: heartbeats alone decide for it.

A pass (:meth:`HealthChecker.run_pass`, what ``toolreg check`` runs) reads every
tool's check state, probes the health endpoints concurrently
(``TOOLREG_CHECK_CONCURRENCY`` at a time, ``TOOLREG_CHECK_TIMEOUT_SECONDS`` each),
and stores all results in one statement. The server's leader does not run
passes: it schedules each tool's checks on its own (scheduler.py) and stores
results with :meth:`HealthChecker.store`. A row is stored only if its state is
still the one the pass read (another pass, e.g. ``toolreg check`` beside the
server, may have moved it); each change to or from ``critical`` is a
change-feed event in that statement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, replace
from enum import StrEnum

import httpx

from omninode_bridge.liveness.leader import Fence, fence_args, fenced_ids
from omninode_bridge.liveness.metrics import LivenessMetrics
from omninode_bridge.liveness.probe import ProbeResult, probe
from omninode_bridge.models import ChangeKind
from omninode_bridge.services.postgres_client import PostgresClient
from omninode_bridge.services.sql import load_queries
from omninode_bridge.settings import Settings

__all__ = [
    "AntiFlap",
    "CheckReport",
    "CheckResult",
    "CheckState",
    "CheckStatus",
    "HealthChecker",
    "transition",
]

logger = logging.getLogger(__name__)
Q = load_queries("liveness.sql")
_MAX_COUNT = 2**31 - 1  # the columns are integers
_MAX_ERROR_CHARS = 500


class CheckStatus(StrEnum):
    """A tool's active-check status."""

    PASSING = "passing"
    CRITICAL = "critical"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CheckState:
    """A status with the current run of consecutive failures or successes."""

    status: CheckStatus
    failures: int = 0
    successes: int = 0


@dataclass(frozen=True, slots=True)
class AntiFlap:
    """The anti-flap state machine: thresholds of consecutive results that flip a status."""

    fail_threshold: int = 3
    pass_threshold: int = 2

    def __post_init__(self) -> None:
        if self.fail_threshold < 1 or self.pass_threshold < 1:
            raise ValueError("anti-flap thresholds must be at least 1")

    def advance(self, state: CheckState, ok: bool) -> CheckState:
        """The state after one more check result ``ok`` (a tool with a health endpoint)."""
        status = CheckStatus.PASSING if state.status is CheckStatus.UNKNOWN else state.status
        if ok:
            successes = min(state.successes + 1, _MAX_COUNT)
            if status is CheckStatus.CRITICAL and successes >= self.pass_threshold:
                status = CheckStatus.PASSING
            return CheckState(status, 0, successes)
        failures = min(state.failures + 1, _MAX_COUNT)
        if status is CheckStatus.PASSING and failures >= self.fail_threshold:
            status = CheckStatus.CRITICAL
        return CheckState(status, failures, 0)

    @staticmethod
    def unchecked() -> CheckState:
        """The state of a tool without a health endpoint."""
        return CheckState(CheckStatus.UNKNOWN)


def transition(before: CheckStatus, after: CheckStatus) -> ChangeKind | None:
    """The change-feed event of a status change: into ``critical``, or out of it."""
    if after is CheckStatus.CRITICAL and before is not CheckStatus.CRITICAL:
        return ChangeKind.CRITICAL
    if before is CheckStatus.CRITICAL and after is not CheckStatus.CRITICAL:
        return ChangeKind.PASSING
    return None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One tool in one pass. ``probe`` is ``None`` for a tool without a health endpoint.

    ``recorded`` is false when the state had changed since the pass read it
    (a concurrent pass) or the pass's fence no longer held: nothing was stored.
    """

    tool_id: str
    health_endpoint: str | None
    before: CheckState
    after: CheckState
    probe: ProbeResult | None
    transition: ChangeKind | None
    recorded: bool


@dataclass(frozen=True)
class CheckReport:
    """Every tool's result in one pass, and how long the pass took."""

    results: list[CheckResult]
    seconds: float

    def counts(self) -> dict[str, int]:
        """Tools per status after the pass (every status present, zeros too)."""
        found = Counter(r.after.status.value for r in self.results)
        return {s.value: found.get(s.value, 0) for s in CheckStatus}

    def summary(self) -> str:
        """One line: tools checked, statuses, transitions, time."""
        counts = ", ".join(f"{n} {status}" for status, n in self.counts().items())
        checked = sum(1 for r in self.results if r.probe is not None)
        changed = [f"{r.tool_id} {r.transition}" for r in self.results if r.transition]
        moved = f"; transitions: {', '.join(changed)}" if changed else ""
        return (
            f"checked {checked} of {len(self.results)} tools in {self.seconds:.3f}s: "
            f"{counts}{moved}"
        )


def _reason(result: CheckResult, policy: AntiFlap) -> str:
    after = result.after
    if result.transition is ChangeKind.CRITICAL:
        last = result.probe.error if result.probe is not None and result.probe.error else "?"
        return (
            f"{after.failures} consecutive failed checks (threshold {policy.fail_threshold}); "
            f"last: {last}"
        )[:_MAX_ERROR_CHARS]
    if after.status is CheckStatus.UNKNOWN:
        return "health endpoint removed: heartbeats alone decide"
    return f"{after.successes} consecutive passing checks (threshold {policy.pass_threshold})"


class HealthChecker:
    """Runs check passes with one shared HTTP client (see probe.make_check_client)."""

    def __init__(
        self,
        client: PostgresClient,
        settings: Settings,
        http: httpx.AsyncClient,
        metrics: LivenessMetrics,
    ) -> None:
        self.client = client
        self.settings = settings
        self.http = http
        self.metrics = metrics
        self.policy = AntiFlap(settings.check_fail_threshold, settings.check_pass_threshold)

    async def _probe_all(self, urls: list[str]) -> list[ProbeResult]:
        gate = asyncio.Semaphore(self.settings.check_concurrency)
        timeout = self.settings.check_timeout_seconds

        async def one(url: str) -> ProbeResult:
            async with gate:
                return await probe(self.http, url, timeout=timeout)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(url)) for url in urls]
        return [t.result() for t in tasks]

    async def run_pass(self, fence: Fence | None = None) -> CheckReport:
        """Check every tool once and store the results.

        With ``fence``, results are stored only while still leading; otherwise
        LeadershipLostError is raised and nothing is stored.
        """
        started = time.perf_counter()
        rows = await self.client.fetch(Q["check_targets"])
        targets = [r for r in rows if r["health_endpoint"]]
        outcomes = await self._probe_all([r["health_endpoint"] for r in targets])
        probes = dict(zip((r["tool_id"] for r in targets), outcomes, strict=True))
        planned: list[tuple[CheckResult, int]] = []
        for row in rows:
            before = CheckState(CheckStatus(row["check_status"]), row["failures"], row["successes"])
            result = probes.get(row["tool_id"])
            after = (
                AntiFlap.unchecked() if result is None else self.policy.advance(before, result.ok)
            )
            kind = transition(before.status, after.status)
            planned.append(
                (
                    CheckResult(
                        row["tool_id"], row["health_endpoint"], before, after, result, kind, False
                    ),
                    row["generation"],
                )
            )
        recorded = await self.store(
            [(r, g) for r, g in planned if r.probe is not None or r.after != r.before], fence
        )
        report = CheckReport(
            [replace(r, recorded=r.tool_id in recorded) for r, _ in planned],
            time.perf_counter() - started,
        )
        self.observe(report.results)
        self.metrics.check_pass_seconds.set(report.seconds)
        return report

    async def store(self, writes: list[tuple[CheckResult, int]], fence: Fence | None) -> set[str]:
        """Store results computed from the states of the generations given, in one statement.

        Returns the ids stored: a tool whose state moved meanwhile (another
        writer) or that was removed is left out. With ``fence``, nothing is
        stored once this process no longer leads (LeadershipLostError).
        """
        if not writes:
            return set()
        results = [r for r, _ in writes]
        row = await self.client.fetchrow(
            Q["record_checks"],
            [r.tool_id for r in results],
            [r.after.status.value for r in results],
            [r.after.failures for r in results],
            [r.after.successes for r in results],
            [r.probe is not None for r in results],
            [r.probe.latency * 1000 if r.probe else None for r in results],
            [
                r.probe.error[:_MAX_ERROR_CHARS] if r.probe and r.probe.error else None
                for r in results
            ],
            [generation for _, generation in writes],
            [r.transition.value if r.transition else None for r in results],
            [_reason(r, self.policy) if r.transition else None for r in results],
            *fence_args(fence),
        )
        return set(fenced_ids(row, "health checks"))

    def observe(self, results: list[CheckResult]) -> None:
        """Count the probes and log and count the transitions stored."""
        m = self.metrics
        for r in results:
            if r.probe is not None:
                m.checks.labels("success" if r.probe.ok else "failure").inc()
                m.check_latency.observe(r.probe.latency)
            if r.transition is not None and r.recorded:
                m.check_transitions.labels(r.transition.value).inc()
                logger.info(
                    "health check: %s is now %s (%s)",
                    r.tool_id,
                    r.after.status.value,
                    r.probe.error if r.probe is not None and r.probe.error else "checks passing",
                )
