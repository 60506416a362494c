"""``toolreg reap``, ``toolreg check`` and ``toolreg tools history``: one liveness pass by hand.

These run the server's passes once, straight on the database, without the
leader lock: a pass by hand beside a running server is safe (removals re-check
the retention; check results are stored only if no other pass moved the
state first) and counts toward the anti-flap runs like any other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from omninode_bridge.cli.common import (
    console,
    database,
    escape,
    new_table,
    print_json,
    run_async,
    settings_from,
)
from omninode_bridge.errors import ToolNotFoundError

if TYPE_CHECKING:  # imported lazily: httpx, prometheus_client and pydantic only when a pass runs
    from omninode_bridge.liveness import CheckReport, CheckResult, ReapReport, ToolHealth
    from omninode_bridge.models import ChangeEvent

__all__ = ["HELD_BACK_EXIT", "check", "history", "reap"]

HELD_BACK_EXIT = 3  # `toolreg reap` exit status when self-preservation held the pass back
_EVENT_LABEL = {"created": "registered", "deleted": "removed"}


def _reap_json(report: ReapReport) -> dict[str, Any]:
    return {
        "total": report.total,
        "due": [
            {"tool_id": d.tool_id, "last_seen": d.last_seen.isoformat() if d.last_seen else None}
            for d in report.due
        ],
        "removed": report.removed,
        "self_preservation": report.self_preservation,
        "held_back": report.held_back,
        "forced": report.forced,
        "dry_run": report.dry_run,
        "share": report.share,
        "threshold": report.threshold,
        "retention_seconds": report.retention_seconds,
        "went_stale": report.went_stale,
        "came_back": report.came_back,
        "events_pruned": report.events_pruned,
    }


def reap(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what a pass would remove; write nothing."
    ),
    force: bool = typer.Option(
        False, "--force", help="Remove due tools even when self-preservation would hold back."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Run one reaper pass: remove tools with no heartbeat within TOOLREG_RETENTION_SECONDS.

    Prints the ids removed, or why nothing was. When more than
    TOOLREG_SELF_PRESERVATION_THRESHOLD of all tools are due at once,
    self-preservation holds back (exit status 3) unless --force.
    """
    from prometheus_client import CollectorRegistry

    from omninode_bridge.liveness import LivenessMetrics, Reaper

    settings = settings_from(ctx)

    async def go() -> ReapReport:
        async with database(settings) as repository:
            reaper = Reaper(repository.client, settings, LivenessMetrics(CollectorRegistry()))
            return await reaper.run_pass(dry_run=dry_run, force=force)

    report = run_async(go())
    if as_json:
        print_json(_reap_json(report))
    else:
        if report.went_stale:
            console.print(f"stale now: {', '.join(report.went_stale)}")
        if report.came_back:
            console.print(f"heartbeating again: {', '.join(report.came_back)}")
        style = "bold yellow" if report.held_back else "default"
        console.print(f"[{style}]{escape(report.summary())}[/]")
    if report.held_back:
        raise typer.Exit(HELD_BACK_EXIT)


def _check_row(r: CheckResult) -> tuple[str, ...]:
    colour = {"passing": "green", "critical": "red", "unknown": "dim"}[r.after.status.value]
    status = f"[{colour}]{r.after.status.value}[/]"
    if r.probe is None:
        return (r.tool_id, status, "-", "-", "-", "no health endpoint: heartbeats alone")
    outcome = "ok" if r.probe.ok else "fail"
    code = f" {r.probe.status}" if r.probe.status is not None else ""
    run = (
        f"{r.after.successes} passed" if r.probe.ok else f"{r.after.failures} failed"
    ) + " in a row"
    detail = r.probe.error or ""
    if r.transition is not None:
        detail = f"now {r.after.status.value}" + (f": {detail}" if detail else "")
    if not r.recorded:
        detail = "(not stored: another pass changed it first) " + detail
    latency = f"{r.probe.latency * 1000:.1f} ms"
    return (r.tool_id, status, outcome + code, latency, run, escape(detail))


def check(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Run one active health-check pass over every tool and print a table.

    GETs each health_endpoint (TOOLREG_CHECK_TIMEOUT_SECONDS, at most
    TOOLREG_CHECK_CONCURRENCY at once). The results count toward the anti-flap
    runs: a tool turns critical after TOOLREG_CHECK_FAIL_THRESHOLD failures in a
    row and passing after TOOLREG_CHECK_PASS_THRESHOLD successes.
    """
    from prometheus_client import CollectorRegistry

    from omninode_bridge.liveness import HealthChecker, LivenessMetrics, make_check_client

    settings = settings_from(ctx)

    async def go() -> CheckReport:
        async with database(settings) as repository, make_check_client(settings) as http:
            metrics = LivenessMetrics(CollectorRegistry())
            return await HealthChecker(repository.client, settings, http, metrics).run_pass()

    report = run_async(go())
    if as_json:
        print_json(
            {
                "seconds": report.seconds,
                "counts": report.counts(),
                "results": [
                    {
                        "tool_id": r.tool_id,
                        "status": r.after.status.value,
                        "checked": r.probe is not None,
                        "ok": r.probe.ok if r.probe else None,
                        "http_status": r.probe.status if r.probe else None,
                        "latency_ms": r.probe.latency * 1000 if r.probe else None,
                        "error": r.probe.error if r.probe else None,
                        "consecutive_failures": r.after.failures,
                        "consecutive_successes": r.after.successes,
                        "transition": r.transition.value if r.transition else None,
                        "recorded": r.recorded,
                    }
                    for r in report.results
                ],
            }
        )
        return
    if report.results:
        table = new_table("tool_id", "status", "check", "latency", "run", "detail")
        for result in report.results:
            table.add_row(*_check_row(result))
        console.print(table)
    console.print(escape(report.summary()))


def _now_line(health: ToolHealth | None) -> str:
    if health is None:
        return "now: not registered"
    beat = "fresh" if health.fresh else "stale"
    return f"now: registered, heartbeat {beat}, check {health.check_status.value}" + (
        f" ({health.last_error})" if health.last_error else ""
    )


def _detail(event: ChangeEvent) -> str:
    if event.reason:
        return event.reason
    reg = event.registration
    if reg is None:
        return ""
    operations = reg.capabilities.get("operations", [])
    ops = ", ".join(map(str, operations)) if isinstance(operations, list) else str(operations)
    return f"{reg.node_type.value}" + (f"; operations: {ops}" if ops else "")


def history(
    ctx: typer.Context,
    tool_id: str = typer.Argument(
        ..., metavar="TOOL_ID", help="The tool's id (also after it was removed)."
    ),
    limit: int = typer.Option(
        1000, "--limit", metavar="N", min=1, max=10_000, help="At most this many events."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """When TOOL_ID was registered, updated, healthy, stale, critical, passing and removed.

    Read from the change feed, kept for TOOLREG_EVENT_RETENTION_SECONDS.
    """
    from omninode_bridge.liveness import HealthHistory

    settings = settings_from(ctx)

    async def go() -> tuple[list[ChangeEvent], ToolHealth | None]:
        async with database(settings) as repository:
            past = HealthHistory(repository.client, settings.ttl_seconds)
            return await past.history(tool_id, limit), await past.get_health(tool_id)

    events, health = run_async(go())
    if not events and health is None:
        raise ToolNotFoundError(tool_id)
    if as_json:
        print_json(
            {
                "tool_id": tool_id,
                "events": [e.as_json() for e in events],
                "now": None
                if health is None
                else {
                    "fresh": health.fresh,
                    "check_status": health.check_status.value,
                    "routable": health.routable,
                    "last_error": health.last_error,
                },
            }
        )
        return
    table = new_table("when (UTC)", "event", "detail")
    for event in events:
        when = event.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        label = _EVENT_LABEL.get(event.kind.value, event.kind.value)
        table.add_row(when, label, escape(_detail(event)))
    console.print(table)
    console.print(escape(_now_line(health)))
