"""DiscoveryBridge: applies what a discovery source announces to the registry.

* An announcement whose value is a valid ``ModelToolRegistrationCreate`` (JSON)
  is upserted, owned by ``source:<source name>``. A tool_id held by another
  writer (an HTTP registration) is never touched: the announcement is skipped
  and counted as a conflict, and retried at every heartbeat round. An id that
  another owner released (deleted or reaped) within ``claim_hold_seconds`` is
  not claimed without an admin's consent (see :mod:`.claims`).
* An invalid value is skipped with a log line naming the key and the fields,
  and counted; nothing is written. If the key held a valid value before, that
  registration stays (the key still exists, so the tool is still announced).
* While its key exists a tool stays healthy: the bridge refreshes the
  heartbeats of all of them every ``refresh_interval`` (a third of the TTL by
  default) in one statement, and re-registers any that another writer removed.
* When a key goes, its tool is removed (owner-conditional, so an HTTP
  registration is never deleted) or, in ``MARK_STALE`` mode, its heartbeat is
  set to the epoch so it reads as unhealthy at once.

Revisions: at start, and whenever the source lost the history the bridge
needs, the bridge lists everything (a snapshot at revision R), reconciles (adds
what is missing, refreshes what is there, removes its own tools whose keys are
gone; it never deletes a tool whose key is present) and follows changes from
R + 1. After a failure it resumes from the revision of the last change it
applied (replaying that revision is harmless: every write is idempotent).
While the source or the database is unreachable it retries with exponential
backoff and removes nothing; the heartbeats of the tools it holds go on during
an etcd outage, so an outage is never read as "every tool left" (a tool whose
lease ran out meanwhile leaves once etcd is back and reports it).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime
from enum import StrEnum
from types import EllipsisType

import orjson
from pydantic import ValidationError

from omninode_bridge.autodiscovery.claims import Claim, claim
from omninode_bridge.autodiscovery.metrics import BridgeMetrics
from omninode_bridge.autodiscovery.source import (
    DiscoverySource,
    SourceEvent,
    SourceEventKind,
    SourceHistoryLostError,
    SourceUnavailableError,
)
from omninode_bridge.errors import (
    PermissionDeniedError,
    RegistryUnavailableError,
    ValidationFailedError,
)
from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.models.fields import DEFAULT_MAX_JSON_BYTES
from omninode_bridge.services import ToolRegistrationRepository
from omninode_bridge.services.sql import load_queries
from omninode_bridge.text import visible

__all__ = ["EPOCH", "DiscoveryBridge", "RemovalMode", "parse_registration"]

logger = logging.getLogger(__name__)

Q = load_queries("autodiscovery.sql")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RemovalMode(StrEnum):
    """What happens to a tool when its announcement goes."""

    DELETE = "delete"
    MARK_STALE = "mark_stale"


def parse_registration(
    tool_id: str, value: bytes, max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
) -> ModelToolRegistrationCreate:
    """The registration announced under ``tool_id``; ValidationFailedError naming the fields.

    ``tool_id`` may be left out of the value (the key supplies it); if given
    it must equal the key's.
    """
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailedError([("value", f"is not valid JSON ({exc})")]) from None
    if not isinstance(data, dict):
        raise ValidationFailedError([("value", "must be a JSON object (a registration)")])
    given = data.setdefault("tool_id", tool_id)
    if given != tool_id:
        raise ValidationFailedError(
            [("tool_id", f"{str(given)[:80]!r} differs from the key's tool id {tool_id!r}")]
        )
    try:
        return ModelToolRegistrationCreate.model_validate(
            data, context={"max_json_bytes": max_json_bytes}
        )
    except ValidationError as exc:
        raise ValidationFailedError(
            [(".".join(str(p) for p in e["loc"]) or "value", e["msg"]) for e in exc.errors()]
        ) from None


class DiscoveryBridge:
    """Follows one :class:`~.source.DiscoverySource` into one repository until cancelled.

    ``synced`` is set once the first reconcile is done and the source is being
    followed. Backoff after a failure starts at ``backoff_initial`` seconds and
    doubles up to ``backoff_max``.
    """

    def __init__(
        self,
        source: DiscoverySource,
        repository: ToolRegistrationRepository,
        *,
        mode: RemovalMode = RemovalMode.DELETE,
        ttl_seconds: float = 300.0,
        refresh_interval: float | None = None,
        max_json_bytes: int = DEFAULT_MAX_JSON_BYTES,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        metrics: BridgeMetrics | None = None,
        claim_hold_seconds: float = 3600.0,
    ) -> None:
        self.source = source
        self.repository = repository
        self.mode = mode
        self.owner = f"source:{source.name}"
        self.refresh_interval = refresh_interval if refresh_interval else ttl_seconds / 3
        self.max_json_bytes = max_json_bytes
        self.claim_hold_seconds = claim_hold_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = max(backoff_max, backoff_initial)
        self.metrics = metrics if metrics is not None else BridgeMetrics()
        self.synced = asyncio.Event()
        self.revision: int | None = None  # of the last change applied
        self._resume_from: int | None = None  # None: list and reconcile first
        self._lock = asyncio.Lock()  # one writer at a time: events, resync, heartbeats
        self._keys: dict[str, str] = {}  # tool_id -> key, every present announcement
        self._wanted: dict[str, ModelToolRegistrationCreate] = {}  # last valid value of each
        self._held: set[str] = set()  # present tools the registry holds for this source
        self._conflicts: set[str] = set()  # present tools another writer owns
        self._claims_held: set[str] = set()  # ids another owner released: consent needed
        self._invalid: dict[str, bytes] = {}  # tool_id -> digest of the invalid value reported
        self._label = source.name

    # -- running ------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the source and refresh heartbeats until cancelled; closes the source after.

        Source and database outages are retried forever. Any other error (a
        bug, a schema behind this code) ends the run with that error.
        """
        follow = asyncio.create_task(self._follow(), name=f"follow {self._label}")
        refresh = asyncio.create_task(self._refresh_forever(), name=f"heartbeats {self._label}")
        try:
            done, _ = await asyncio.wait({follow, refresh}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the error that ended it, as it is (no ExceptionGroup)
        finally:
            for task in (follow, refresh):
                task.cancel()
            # Both are cancelled here; an error that ended one was raised above.
            await asyncio.gather(follow, refresh, return_exceptions=True)
            self.metrics.connected.labels(self._label).set(0)
            await self.source.aclose()

    async def _follow(self) -> None:
        backoff = self.backoff_initial
        cause = "start"
        lost_in_a_row = 0
        registry_down = False  # the last failure was the database's; no write since
        while True:
            try:
                if self._resume_from is None:
                    await self.resync(cause)
                    registry_down = False
                assert self._resume_from is not None
                async with self.source.watch(self._resume_from) as events:
                    self.metrics.connected.labels(self._label).set(1)
                    self.synced.set()
                    # A watch shows the source is back, not the registry: after a
                    # database failure only a change applied resets the backoff.
                    if not registry_down:
                        backoff, lost_in_a_row = self.backoff_initial, 0
                    async for event in events:
                        await self.apply(event)
                        if registry_down:
                            backoff, lost_in_a_row, registry_down = self.backoff_initial, 0, False
                raise SourceUnavailableError(f"{self.source.description}: the watch ended")
            except SourceHistoryLostError as exc:
                logger.warning("%s: %s; listing the source again", self._label, exc)
                self._resume_from, cause = None, "history_lost"
                lost_in_a_row += 1
                if lost_in_a_row == 1:
                    continue  # resync at once; back off only if it keeps happening
                side = "source"
            except SourceUnavailableError as exc:
                side = "source"
                logger.warning("%s unreachable: %s", self.source.description, exc)
            except RegistryUnavailableError as exc:
                side, registry_down = "registry", True
                logger.warning("%s: the registry database is unreachable: %s", self._label, exc)
            self.metrics.connected.labels(self._label).set(0)
            self.metrics.failures.labels(self._label, side).inc()
            logger.info("%s: retrying in %.1f s (registrations unchanged)", self._label, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except RegistryUnavailableError as exc:
                self.metrics.failures.labels(self._label, "registry").inc()
                logger.warning("%s: heartbeat refresh failed, next try in %.0f s: %s",
                               self._label, self.refresh_interval, exc)  # fmt: skip

    # -- the three operations -------------------------------------------------------

    async def resync(self, cause: str = "start") -> None:
        """List the source and reconcile the registry with it (see the module docstring)."""
        snapshot = await self.source.snapshot()
        async with self._lock:
            keys = {entry.tool_id: visible(entry.key) for entry in snapshot.entries}
            self._invalid = {t: d for t, d in self._invalid.items() if t in keys}
            wanted: dict[str, ModelToolRegistrationCreate] = {}
            for entry in snapshot.entries:
                try:
                    wanted[entry.tool_id] = parse_registration(
                        entry.tool_id, entry.value, self.max_json_bytes
                    )
                    self._invalid.pop(entry.tool_id, None)
                except ValidationFailedError as exc:
                    self._report_invalid(keys[entry.tool_id], entry.tool_id, entry.value, exc)
                    if entry.tool_id in self._wanted:  # keep the last valid value we saw
                        wanted[entry.tool_id] = self._wanted[entry.tool_id]
            owned = set(await self._owned_tool_ids())
            owners = await self.repository.get_owners(list(wanted))
            self._keys, self._wanted = keys, wanted
            self._held = owned & keys.keys()
            self._conflicts &= keys.keys()  # known: not logged and counted again
            self._claims_held &= keys.keys()
            for tool_id, registration in wanted.items():
                await self._write(tool_id, registration, owners.get(tool_id))
            gone = sorted(owned - keys.keys())
            for tool_id in gone:
                await self._unannounce(tool_id, f"absent from {self.source.name} at resync")
            self.metrics.keys.labels(self._label).set(len(keys))
            self._resume_from = snapshot.revision + 1
            self.revision = snapshot.revision
            self.metrics.revision.labels(self._label).set(snapshot.revision)
            self.metrics.resyncs.labels(self._label, cause).inc()
            logger.info(
                "%s: reconciled at revision %d (%s): %d announced, %d held, %d removed, "
                "%d conflicts", self._label, snapshot.revision, cause, len(keys),
                len(self._held), len(gone), len(self._conflicts),
            )  # fmt: skip

    async def apply(self, event: SourceEvent) -> None:
        """Apply one change; raises RegistryUnavailableError (the change is then replayed)."""
        async with self._lock:
            if event.kind is SourceEventKind.PUT:
                assert event.value is not None
                await self._announce(event.key, event.tool_id, event.value)
            else:
                await self._unannounce(event.tool_id, event.reason or "announcement removed")
            self.metrics.keys.labels(self._label).set(len(self._keys))
            # Several changes can share a revision (a lease revoked with many
            # keys): resuming from this one replays all of it, harmlessly.
            self._resume_from = event.revision
            self.revision = event.revision
            self.metrics.revision.labels(self._label).set(event.revision)

    async def refresh(self) -> None:
        """Heartbeat every held tool in one statement; re-register the missing, retry conflicts."""
        async with self._lock:
            held = sorted(self._held)
            missing: list[str] = []
            if held:  # owner-checked: a tool an admin took over is no longer kept alive
                missing, taken = await self.repository.update_heartbeats_owned(held, self.owner)
                if taken:
                    for tool_id in taken:
                        self._held.discard(tool_id)
                        self._conflicts.add(tool_id)
                        self.metrics.conflicts.labels(self._label).inc()
                        logger.warning(
                            "%s: tool %r (key %s) was taken over by another writer; "
                            "leaving it alone", self._label, tool_id, self._keys.get(tool_id),
                        )  # fmt: skip
                    held = sorted(self._held)
                    missing, _ = await self.repository.update_heartbeats_owned(held, self.owner)
            for tool_id in missing:
                self._held.discard(tool_id)
                if tool_id in self._wanted:
                    logger.warning(
                        "%s: tool %r (key %s) was removed from the registry while its key "
                        "exists; registering it again", self._label, tool_id,
                        self._keys.get(tool_id),
                    )  # fmt: skip
                    await self._write(tool_id, self._wanted[tool_id], None)
            for tool_id in sorted(self._conflicts | self._claims_held):
                if tool_id in self._wanted:
                    await self._write(tool_id, self._wanted[tool_id], ...)

    # -- helpers ------------------------------------------------------------------

    async def _owned_tool_ids(self) -> list[str]:
        rows = await self.repository.client.fetch(Q["owned_tool_ids"], self.owner)
        return [row["tool_id"] for row in rows]

    def _report_invalid(
        self, key: str, tool_id: str, value: bytes, exc: ValidationFailedError
    ) -> None:
        """Log and count an invalid value once: a replay or a resync that meets the same
        value again says nothing new. Field names come from the announcer: they are
        escaped in the log, and counted under ``value`` unless the model has them."""
        digest = hashlib.blake2b(value, digest_size=16).digest()
        if self._invalid.get(tool_id) == digest:
            return
        self._invalid[tool_id] = digest
        fields = visible("; ".join(f"{field}: {message}" for field, message in exc.errors))
        logger.warning("%s: skipped key %s: invalid registration: %s", self._label, key, fields)
        top = exc.errors[0][0].split(".")[0] if exc.errors else "value"
        if top not in ModelToolRegistrationCreate.model_fields:
            top = "value"
        self.metrics.invalid.labels(self._label, top).inc()

    async def _announce(self, key: str, tool_id: str, value: bytes) -> None:
        key = visible(key)
        self._keys[tool_id] = key
        try:
            registration = parse_registration(tool_id, value, self.max_json_bytes)
        except ValidationFailedError as exc:
            self._report_invalid(key, tool_id, value, exc)
            return
        self._invalid.pop(tool_id, None)
        self._wanted[tool_id] = registration
        await self._write(tool_id, registration, ...)

    async def _write(
        self,
        tool_id: str,
        registration: ModelToolRegistrationCreate,
        owner: str | EllipsisType | None,  # ... = not looked up yet
    ) -> None:
        """Create or replace ``tool_id`` if it is absent or ours; otherwise note a conflict."""
        if owner is ...:
            owner = await self.repository.get_owner(tool_id)
        created = False
        if owner == self.owner:
            try:  # owner-checked in the same statement: a tool re-registered meanwhile is kept
                _, created = await self.repository.upsert_registration(
                    registration, owner=self.owner, owned_only=True
                )
            except PermissionDeniedError:
                owner = "another writer"
        elif owner is None:
            # ON CONFLICT DO NOTHING: a tool registered meanwhile is never overwritten.
            outcome = await claim(
                self.repository.client, registration, self.owner, self.claim_hold_seconds
            )
            if outcome.held:
                self._hold_claim(tool_id, outcome)
                return
            created = outcome.created
            if not created:
                owner = "another writer"
        if owner not in (None, self.owner):
            if tool_id not in self._conflicts:
                logger.warning(
                    "%s: skipped key %s: tool_id %r is registered by another writer",
                    self._label, self._keys.get(tool_id, tool_id), tool_id,
                )  # fmt: skip
                self.metrics.conflicts.labels(self._label).inc()
            self._conflicts.add(tool_id)
            self._held.discard(tool_id)
            return
        self._conflicts.discard(tool_id)
        self._release_claim(tool_id)
        self._held.add(tool_id)
        self.metrics.applied.labels(self._label, "registered" if created else "refreshed").inc()
        if created:
            logger.info("%s: registered tool %r (key %s)", self._label, tool_id,
                        self._keys.get(tool_id))  # fmt: skip

    def _hold_claim(self, tool_id: str, outcome: Claim) -> None:
        self._held.discard(tool_id)
        self._conflicts.discard(tool_id)
        if tool_id in self._claims_held:
            return
        self._claims_held.add(tool_id)
        self.metrics.claims_held.labels(self._label).inc()
        self.metrics.held_claims.labels(self._label).set(len(self._claims_held))
        when = outcome.released_at.isoformat() if outcome.released_at else "?"
        logger.warning(
            "%s: claim of tool_id %r (key %s) held: %s released it at %s, within the hold "
            "of %gs; an admin consents with `toolreg autodiscover allow %s`",
            self._label, tool_id, self._keys.get(tool_id, tool_id),
            outcome.released_by or "an unowned registration", when,
            self.claim_hold_seconds, tool_id,
        )  # fmt: skip

    def _release_claim(self, tool_id: str) -> None:
        if tool_id in self._claims_held:
            self._claims_held.discard(tool_id)
            self.metrics.held_claims.labels(self._label).set(len(self._claims_held))

    async def _unannounce(self, tool_id: str, reason: str) -> None:
        """The key of ``tool_id`` is gone: remove (or mark stale) the tool if it is ours."""
        self._keys.pop(tool_id, None)
        self._wanted.pop(tool_id, None)
        self._invalid.pop(tool_id, None)
        self._conflicts.discard(tool_id)
        self._release_claim(tool_id)
        self._held.discard(tool_id)
        if self.mode is RemovalMode.DELETE:
            if await self.repository.delete_registration(tool_id, reason, owner=self.owner):
                self.metrics.applied.labels(self._label, "removed").inc()
                logger.info("%s: removed tool %r (%s)", self._label, tool_id, reason)
            return
        if await self.repository.expire_heartbeat(tool_id, self.owner, EPOCH):
            self.metrics.applied.labels(self._label, "marked_stale").inc()
            logger.info("%s: marked tool %r stale (%s)", self._label, tool_id, reason)
