"""``toolreg heartbeat``: keep tools alive from a shell (once, or every N seconds)."""

from __future__ import annotations

import re

import typer

from omninode_bridge.cli.common import console, database, err_console, run_async, settings_from
from omninode_bridge.errors import OmniNodeBridgeError, ValidationFailedError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``10s``, ``1.5m``, ``500ms``, ``2h`` or plain seconds."""
    match = _DURATION.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ValidationFailedError(
            [("every", f"{text!r} is not a duration like 10s, 500ms or 2m")]
        )
    return float(match.group(1)) * _UNIT[match.group(2)]


def heartbeat(
    ctx: typer.Context,
    tool_ids: list[str] = typer.Argument(..., metavar="TOOL_IDS", help="Tool ids to heartbeat."),
    every: str | None = typer.Option(
        None,
        "--every",
        metavar="DURATION",
        help="Repeat at this interval (10s, 500ms, 1m, 2h) until interrupted; default: once.",
    ),
) -> None:
    """Record a heartbeat for TOOL_IDS now, or every --every until Ctrl-C.

    Unknown ids are reported; with --every, database outages are reported and
    retried instead of ending the loop.
    """
    settings = settings_from(ctx)
    interval = parse_duration(every) if every else None

    async def once_or_forever() -> list[str]:
        import asyncio

        async with database(settings) as repository:
            while True:
                try:
                    unknown = await repository.update_heartbeats(tool_ids)
                except OmniNodeBridgeError as exc:
                    if interval is None:
                        raise
                    err_console.print(f"heartbeat failed, retrying in {interval:g}s: {exc}")
                    await asyncio.sleep(interval)
                    continue
                alive = [t for t in dict.fromkeys(tool_ids) if t not in unknown]
                if alive:
                    console.print(f"heartbeat: {', '.join(alive)}")
                if unknown:
                    err_console.print(f"not registered: {', '.join(unknown)}")
                if interval is None:
                    return unknown
                await asyncio.sleep(interval)

    try:
        unknown = run_async(once_or_forever())
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    if unknown:
        raise typer.Exit(1)
