"""Claims of tool ids by auto-discovery sources, and an admin's consent to them.

When a registration is deleted or reaped, the registry remembers who held its
id (``tool_id_releases``). A source that later announces the same id does not
take it while the release is younger than the hold (``TOOLREG_RETENTION_SECONDS``
by default) and another owner held it: the claim is *held*, logged, counted
(``toolreg_autodiscovery_claims_held_total``), noted on the release, listed by
``toolreg autodiscover status``, and tried again at every heartbeat refresh of
the bridge. An admin consents with ``toolreg autodiscover allow TOOL_ID``
(``--source`` to name the one source allowed), or lets every source claim at
once with ``TOOLREG_AUTODISCOVER_CLAIM_RELEASED=true``. An id the same source
released (its key went and came back) is never held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.models.timestamps import to_utc
from omninode_bridge.services.postgres_client import PostgresClient
from omninode_bridge.services.sql import load_queries

__all__ = ["Claim", "HeldClaim", "allow_claim", "claim", "held_claims", "source_tool_counts"]

Q = load_queries("autodiscovery.sql")
ANY_SOURCE = "*"


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim did: ``created``, or ``held`` by a release of ``released_by``."""

    created: bool
    held: bool
    released_by: str | None = None
    released_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class HeldClaim:
    """A claim held back: who released the id, when, and which source wants it."""

    tool_id: str
    released_by: str | None
    released_at: datetime
    reason: str | None
    claimed_by: str
    claim_seen_at: datetime


async def claim(
    client: PostgresClient, registration: ModelToolRegistrationCreate, owner: str, hold: float
) -> Claim:
    """Register ``registration`` for ``owner`` unless absent-but-held (see the module docstring).

    ``created`` is false and ``held`` false when the id is registered already.
    ``hold`` of 0 never holds a claim.
    """
    row = await client.fetchrow(
        Q["claim_registration"],
        registration.tool_id,
        registration.node_type.value,
        registration.capabilities,
        registration.endpoints,
        registration.metadata,
        registration.health_endpoint,
        owner,
        float(hold),
    )
    assert row is not None  # a SELECT of scalars always returns one row
    released_at = row["released_at"]
    return Claim(
        bool(row["created"]),
        bool(row["held"]),
        row["released_by"],
        to_utc(released_at) if released_at is not None else None,
    )


async def held_claims(client: PostgresClient, hold: float) -> list[HeldClaim]:
    """Claims held back now (releases younger than ``hold`` seconds), by tool id."""
    return [
        HeldClaim(
            row["tool_id"],
            row["released_by"],
            to_utc(row["released_at"]),
            row["reason"],
            row["claimed_by"],
            to_utc(row["claim_seen_at"]),
        )
        for row in await client.fetch(Q["held_claims"], float(hold))
    ]


async def allow_claim(
    client: PostgresClient, tool_id: str, source: str | None = None
) -> tuple[str | None, datetime] | None:
    """Consent: ``source`` (``source:<name>``; ``None``: any source) may claim ``tool_id``.

    Returns who released it and when; ``None`` when no release of it is remembered.
    """
    row = await client.fetchrow(Q["allow_claim"], tool_id, source or ANY_SOURCE)
    if row is None:
        return None
    return row["released_by"], to_utc(row["released_at"])


async def source_tool_counts(client: PostgresClient) -> dict[str, int]:
    """How many tools each source owns (``source:<name>`` -> count)."""
    return {row["owner"]: int(row["tools"]) for row in await client.fetch(Q["source_tool_counts"])}
