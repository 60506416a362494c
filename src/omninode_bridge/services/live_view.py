"""LiveView: every registration with its health, in memory, for the read-only faces.

The Consul-compatible API and Prometheus service discovery answer from this
view, and their blocking queries wait on it, so that a thousand waiting
clients hold no database connection and one change wakes them all at once.

- **Load**: the feed's head cursor, then every registration with its
  ``tool_health`` row, page by page; then the hub's subscription from that
  cursor replays whatever changed during the load (events are idempotent here).
- **Compact**: a million tools must fit beside the discovery index, so a tool
  is its registration as ~150 bytes (:class:`RegistrationCodec`, its
  dictionary trained on the first page loaded), decoded on demand
  (:attr:`LiveTool.registration`, a few microseconds), and a shared
  :class:`Digest` of what whole-view answers group and filter by. Faces decode
  only the tools they answer for (the members of one key, the tools whose
  digest names a metrics or MCP endpoint); whole-view answers are rendered
  once per change with :meth:`LiveView.memo`.
- **Changes**: ``created``/``updated``/``deleted`` replace or drop a tool;
  ``stale``/``healthy`` (the liveness leader's heartbeat sweep) and
  ``critical``/``passing`` (active checks) set its health. Health therefore
  follows the sweep: a heartbeat check turns critical within
  ``TOOLREG_REAP_INTERVAL_SECONDS`` of the TTL, on every replica alike.
- **Versions**: a face names the keys a registration belongs to (Consul: its
  service names); each key remembers the transaction id of the last event of
  a tool that belonged to it before or after the event. :meth:`version` of a
  key (or of the whole view) is at least the load's head and at least 1; it
  never goes down while the view follows the feed, and it changes whenever
  an answer built from that key's tools may change.

- **Order and changes**: the tool ids are also kept sorted (:meth:`ids_after`
  pages them by tool_id without sorting a million), and the view journals
  which tools each change touched, so that a follower that last looked at
  :attr:`generation` g learns what changed since with :meth:`changes_since`
  instead of comparing every tool (``None`` after a reload, or when more than
  ``JOURNAL_ENTRIES`` changes piled up unread: compare everything then).

While the hub is not following, :attr:`current` is false; once it follows
again the view resumes after the last event it applied (a lag or an outage
costs no reload). It loads everything again only when the feed no longer
holds that cursor (``ResyncRequiredError``) or applying an event failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import replace
from itertools import islice
from typing import Any

from sortedcontainers import SortedList

from omninode_bridge.errors import (
    OmniNodeBridgeError,
    QueryTimeoutError,
    RegistryUnavailableError,
    ResyncRequiredError,
)
from omninode_bridge.models import ChangeEvent, ChangeKind, ModelToolRegistration
from omninode_bridge.services.cursors import FeedPosition
from omninode_bridge.services.feed_hub import FeedHub
from omninode_bridge.services.id_set import IdSet
from omninode_bridge.services.live_store import ToolStore
from omninode_bridge.services.live_tool import DEFAULT_CODEC, Digest, LiveTool, digest_of
from omninode_bridge.services.registration_codec import RegistrationCodec, Row
from omninode_bridge.services.sql import load_queries
from omninode_bridge.services.tool_registration_repository import ToolRegistrationRepository
from omninode_bridge.tasks import cancel_and_wait

__all__ = ["Digest", "LiveTool", "LiveView"]  # the first two: of live_tool

logger = logging.getLogger(__name__)

Q = load_queries("live_view.sql")
LOAD_PAGE = 1000
RETRY_SECONDS = 0.5
MEMO_ENTRIES = 1024
PAGE_ATTEMPTS = 5
JOURNAL_ENTRIES = 100_000
HEALTHS = ("healthy", "stale", "critical")  # LiveTool.health


def _health(row: Row) -> dict[str, Any]:
    """A loaded row's health fields of :class:`LiveTool` (no ``tool_health`` row: healthy)."""
    return {
        "heartbeat_ok": row["heartbeat_status"] != "stale",
        "check_status": row["check_status"] if row["checked"] else None,
        "check_output": row["last_error"] or "",
    }


class LiveView:
    """Registrations and health kept current from the change feed; see the module docstring."""

    def __init__(
        self,
        repository: ToolRegistrationRepository,
        hub: FeedHub,
        keys: Callable[[ModelToolRegistration], Iterable[str]] = lambda _: (),
    ) -> None:
        self.repository = repository
        self.hub = hub
        self.keys = keys
        self.codec: RegistrationCodec | None = None  # trained on the first load; then fixed
        self._tools = ToolStore(DEFAULT_CODEC, 1)
        self._key_versions: dict[str, int] = {}
        self._members: dict[str, IdSet] = {}  # key -> tool ids that belong to it
        self._floor = 1  # the load's head: no version is below it
        self._last = 1  # txid of the last event applied
        self._changed = asyncio.Event()
        self._memo: dict[Hashable, tuple[int, bytes]] = {}
        self._generation = 0
        self._ids: SortedList[str] = SortedList()
        self._health_counts = dict.fromkeys(HEALTHS, 0)
        # The tool each change made since generation _journal_floor touched, in order.
        self._journal: list[str] = []
        self._journal_floor = 0
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.current = False

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Begin loading and following in the background (idempotent); the server calls it
        at start so that the first reader does not wait for a large registry to load."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="toolreg-live-view")

    async def ensure_started(self, timeout: float) -> None:
        """Start following (once) and wait up to ``timeout`` s for the first load.

        Returns at once when it is loaded. Raises TimeoutError when it is not in time.
        """
        if self._ready.is_set():
            return
        self.start()
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        failing = False  # log once per outage, not at every retry
        cursor: str | None = None  # where following resumes; None: load everything first
        while True:
            try:
                if cursor is None:
                    cursor = await self._load()
                elif not self.hub.following:  # resuming: not before the hub follows again
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                self.current = True
                if failing:
                    failing = False
                    logger.info("live view is current again")
                async for event in self.hub.subscribe(cursor):
                    self._apply(event)
                    cursor = event.cursor
            except asyncio.CancelledError:
                raise
            except ResyncRequiredError as exc:  # the feed no longer has the cursor
                self.current = False
                cursor = None
                logger.warning("live view fell out of the feed (%s); reloading", exc)
                failing = True
            except OmniNodeBridgeError as exc:  # feed lost or lagged, database away
                # Events stay in the feed: resume after the last one applied, rather than
                # reload a large registry (and hold it twice) for a moment's outage.
                self.current = False
                if not failing:
                    logger.warning("live view stopped following (%s); resuming", exc)
                failing = True
                await asyncio.sleep(RETRY_SECONDS)
            except Exception as exc:
                self.current = False
                cursor = None
                logger.error("live view failed; reloading", exc_info=exc)
                failing = True
                await asyncio.sleep(RETRY_SECONDS)

    async def _load(self) -> str:
        """Every registration with its health, page by page; the feed cursor to follow from.

        Pages are encoded in a worker thread (deflate runs without the GIL), so the
        event loop keeps serving while a large registry loads.
        """
        cursor = await self.repository.feed.head_cursor()
        floor = max(self._floor, self._last, FeedPosition.parse(cursor).txid, 1)
        tools: ToolStore | None = None
        members: dict[str, list[str]] = {}
        ids: list[str] = []  # in tool_id order, as the pages come
        counts = dict.fromkeys(HEALTHS, 0)
        after = ""
        while True:
            rows = await self._page(after)
            if self.codec is None:  # one codec for the view's life: stored bytes stay readable
                self.codec = RegistrationCodec.trained(rows)
            codec = self.codec
            if tools is None:
                tools = ToolStore(codec, floor)
            if not rows:
                break
            encoded = await asyncio.to_thread(codec.encode_rows, rows)
            for row, data in zip(rows, encoded, strict=True):
                registration = ModelToolRegistration.from_row(row)
                tool_id = registration.tool_id
                tool = LiveTool(
                    tool_id,
                    digest_of(registration),
                    data,
                    codec,
                    **_health(row),
                    version=floor,
                    created_version=floor,
                )
                tools.put(tool)
                counts[tool.health] += 1
                for key in set(self.keys(registration)):
                    members.setdefault(key, []).append(tool_id)
                ids.append(tool_id)
            after = rows[-1]["tool_id"]
        self._floor = self._last = floor
        self._tools = tools
        self._ids = SortedList(ids)
        self._health_counts = counts
        self._key_versions.clear()
        self._members = {key: IdSet.of_distinct(ids) for key, ids in members.items()}
        self.current = True
        self._ready.set()
        self._signal()
        self._journal.clear()  # what a reload changed is not journalled: see changes_since
        self._journal_floor = self._generation
        return cursor

    async def _page(self, after: str) -> list[Any]:
        """One page of the load; a failed read is retried (``PAGE_ATTEMPTS`` in all) so that
        a busy database costs a million-tool load a page, not a restart from the first."""
        for attempt in range(1, PAGE_ATTEMPTS + 1):
            try:
                return await self.repository.client.fetch(Q["load_page"], after, LOAD_PAGE)
            except (RegistryUnavailableError, QueryTimeoutError) as exc:
                if attempt == PAGE_ATTEMPTS:
                    raise
                logger.warning("live view load: reading a page failed (%s); retrying", exc)
                await asyncio.sleep(RETRY_SECONDS * attempt)
        raise AssertionError("unreachable")

    # -- changes ------------------------------------------------------------------

    def _apply(self, event: ChangeEvent) -> None:
        txid = FeedPosition.parse(event.cursor).txid
        tool_id = event.tool_id
        tool = self._tools.get(tool_id)
        kind = event.kind
        after: LiveTool | None = tool
        registration: ModelToolRegistration | None = None  # after the event, when decoded
        if kind is ChangeKind.DELETED:
            after = None
        elif kind in (ChangeKind.CREATED, ChangeKind.UPDATED) and event.registration is not None:
            registration = event.registration
            codec = self._tools.codec
            if tool is None:
                after = LiveTool.of(registration, codec, version=txid, created_version=txid)
            else:
                after = replace(
                    tool,
                    digest=digest_of(registration),
                    data=codec.encode(registration),
                    codec=codec,
                    heartbeat_ok=True,
                )
        elif tool is not None and kind in (ChangeKind.STALE, ChangeKind.HEALTHY):
            after = replace(tool, heartbeat_ok=kind is ChangeKind.HEALTHY)
        elif tool is not None and kind in (ChangeKind.CRITICAL, ChangeKind.PASSING):
            after = replace(tool, check_status=kind.value, check_output=event.reason or "")
        before = set(self.keys(tool.registration)) if tool is not None else set()
        now: set[str] = set()
        if tool is None and after is not None:
            self._ids.add(tool_id)
        elif tool is not None and after is None:
            self._ids.remove(tool_id)
        if tool is not None:
            self._health_counts[tool.health] -= 1
        if after is not None:
            self._health_counts[after.health] += 1
        if after is None:
            self._tools.pop(tool_id)
        else:
            after = replace(after, version=txid)
            self._tools.put(after)
            # A health change leaves the registration, and so its keys, as they were.
            now = before if registration is None else set(self.keys(registration))
        for key in before - now:
            members = self._members.get(key)
            if members is not None:
                members.discard(tool_id)
                if not members:
                    del self._members[key]
        for key in now - before:
            self._members.setdefault(key, IdSet()).add(tool_id)
        for key in before | now:
            self._key_versions[key] = txid
        self._last = max(self._last, txid)
        self._journal_change(tool_id)
        self._signal()

    def _journal_change(self, tool_id: str) -> None:
        """Journal the change the next signal announces (see :meth:`changes_since`)."""
        if len(self._journal) >= JOURNAL_ENTRIES:  # start over: older readers compare all
            self._journal = [tool_id]
            self._journal_floor = self._generation
            return
        self._journal.append(tool_id)

    def _signal(self) -> None:
        self._generation += 1  # every change, even within one transaction's events
        self._changed.set()
        self._changed = asyncio.Event()

    # -- reading ------------------------------------------------------------------

    def tools(self, digest: Callable[[Digest], bool] | None = None) -> Iterator[LiveTool]:
        """Every tool, in no particular order; with ``digest``, only the tools whose digest
        it accepts (the others cost nearly nothing)."""
        return iter(self._tools) if digest is None else self._tools.select(digest)

    def get(self, tool_id: str) -> LiveTool | None:
        return self._tools.get(tool_id)

    def members(self, key: str) -> list[LiveTool]:
        """The tools that belong to ``key`` now."""
        found = (self._tools.get(t) for t in self._members.get(key, ()))
        return [t for t in found if t is not None]

    def ids_after(self, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` tool ids in tool_id order, those after ``after`` (``None``: from
        the first); a few microseconds whatever the size of the view."""
        return list(islice(self.ids_from(after), limit))

    def ids_from(self, after: str | None) -> Iterator[str]:
        """The tool ids after ``after`` (``None``: all), in tool_id order, lazily; to be
        consumed before the view changes (without awaiting in between)."""
        if after is None:
            return iter(self._ids)
        return iter(self._ids.irange(minimum=after, inclusive=(False, True)))

    def health_counts(self) -> dict[str, int]:
        """How many tools are healthy, stale and critical now (kept as changes apply)."""
        return dict(self._health_counts)

    @property
    def generation(self) -> int:
        """A number that grows with every change of the view (and with every reload)."""
        return self._generation

    def changes_since(self, generation: int) -> set[str] | None:
        """The tool ids that the changes after ``generation`` (a value :attr:`generation`
        had) touched: created, updated, deleted, or their health set. ``None`` when the
        view cannot tell: it reloaded since (a reload replaces every tool), or more than
        ``JOURNAL_ENTRIES`` changes came after it (the journal starts over then, whoever
        read it); compare every tool then."""
        if generation < self._journal_floor:
            return None
        return set(self._journal[generation - self._journal_floor :])

    def names(self) -> list[str]:
        """The keys that some tool belongs to now, sorted."""
        return sorted(self._members)

    def version(self, key: str | None = None) -> int:
        """The version of answers built from ``key``'s tools (``None``: the whole view)."""
        if key is None:
            return self._last
        return self._key_versions.get(key, self._floor)

    def memo(self, key: Hashable, build: Callable[[], bytes]) -> bytes:
        """``build()``, computed once per change of the view for each ``key``.

        A thousand clients woken by one change share one rendering of the same
        answer. Any change of the view invalidates every entry.
        """
        hit = self._memo.get(key)
        if hit is not None and hit[0] == self._generation:
            return hit[1]
        value = build()
        if len(self._memo) >= MEMO_ENTRIES:
            self._memo.clear()
        self._memo[key] = (self._generation, value)
        return value

    async def changed(self) -> None:
        """Return once the view next changes (an event applied, or a reload)."""
        await self._changed.wait()
