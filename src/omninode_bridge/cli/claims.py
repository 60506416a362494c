"""``toolreg autodiscover status`` and ``allow``: sources' tools, and claims held for consent."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import typer

from omninode_bridge.cli.common import (
    console,
    database,
    escape,
    print_json,
    run_async,
    settings_from,
)
from omninode_bridge.errors import ToolNotFoundError

if TYPE_CHECKING:  # the autodiscovery package (gRPC, httpx) loads only when a command runs
    from omninode_bridge.autodiscovery.claims import HeldClaim

__all__ = ["allow", "status"]


def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Tools each auto-discovery source owns, and the claims held for an admin's consent.

    A claim is held when a source announces a tool_id that another owner
    released (deleted or reaped) within TOOLREG_RETENTION_SECONDS; `toolreg
    autodiscover allow TOOL_ID` consents.
    """
    from omninode_bridge.autodiscovery.claims import held_claims, source_tool_counts

    settings = settings_from(ctx)

    async def go() -> tuple[dict[str, int], list[HeldClaim]]:
        async with database(settings) as repository:
            counts = await source_tool_counts(repository.client)
            return counts, await held_claims(repository.client, settings.claim_hold_seconds)

    counts, held = run_async(go())
    if as_json:
        print_json(
            {
                "sources": counts,
                "held_claims": [
                    {
                        "tool_id": h.tool_id,
                        "released_by": h.released_by,
                        "released_at": h.released_at.isoformat(),
                        "reason": h.reason,
                        "claimed_by": h.claimed_by,
                        "claim_seen_at": h.claim_seen_at.isoformat(),
                    }
                    for h in held
                ],
            }
        )
        return
    if counts:
        for owner, n in counts.items():
            console.print(f"{escape(owner)}: {n} tool{'s' if n != 1 else ''}")
    else:
        console.print("no tools registered by auto-discovery sources")
    if not held:
        console.print("no claims held")
        return
    console.print(
        f"{len(held)} claim{'s' if len(held) != 1 else ''} held for an admin's consent "
        "(toolreg autodiscover allow TOOL_ID):"
    )
    for h in held:
        console.print(
            f"  {escape(h.tool_id)}: released by {escape(h.released_by or '(no owner)')} at "
            f"{h.released_at.isoformat(timespec='seconds')} ({escape(h.reason or '-')}); "
            f"wanted by {escape(h.claimed_by)}, last at "
            f"{h.claim_seen_at.isoformat(timespec='seconds')}",
            soft_wrap=True,
        )


def allow(
    ctx: typer.Context,
    tool_id: str = typer.Argument(
        ..., metavar="TOOL_ID", help="The released tool_id a source may now claim."
    ),
    source: str | None = typer.Option(
        None,
        "--source",
        metavar="SOURCE",
        help="Only this source (e.g. etcd:/omninode/tools/); default: any.",
    ),
) -> None:
    """Consent to a source claiming a tool_id that another owner released.

    The bridge claims it at its next heartbeat refresh (a third of the TTL).
    """
    from omninode_bridge.autodiscovery.claims import allow_claim

    settings = settings_from(ctx)
    owner = None if source is None else f"source:{source.removeprefix('source:')}"

    async def go() -> tuple[str | None, datetime] | None:
        async with database(settings) as repository:
            return await allow_claim(repository.client, tool_id, owner)

    found = run_async(go())
    if found is None:
        raise ToolNotFoundError(tool_id)
    released_by, released_at = found
    who = escape(owner or "any source")
    console.print(
        f"{escape(tool_id)}: released by {escape(released_by or '(no owner)')} at "
        f"{released_at.isoformat(timespec='seconds')}; {who} may claim it now"
    )
