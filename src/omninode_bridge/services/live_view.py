"""LiveView: every registration with its health, in memory, for the read-only faces.

The Consul-compatible API and Prometheus service discovery answer from this
view, and their blocking queries wait on it, so that a thousand waiting
clients hold no database connection and one change wakes them all at once.

- **Load**: the feed's head cursor, then every registration page by page and
  every row of ``tool_health``; then the hub's subscription from that cursor
  replays whatever changed during the load (events are idempotent here).
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

While the hub is not following, :attr:`current` is false and the view
reloads once it follows again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace

from omninode_bridge.errors import OmniNodeBridgeError
from omninode_bridge.models import ChangeEvent, ChangeKind, ModelToolRegistration
from omninode_bridge.services.cursors import FeedPosition
from omninode_bridge.services.feed_hub import FeedHub
from omninode_bridge.services.sql import load_queries
from omninode_bridge.services.tool_registration_repository import ToolRegistrationRepository

__all__ = ["LiveTool", "LiveView"]

logger = logging.getLogger(__name__)

Q = load_queries("live_view.sql")
LOAD_PAGE = 1000
RETRY_SECONDS = 0.5
MEMO_ENTRIES = 1024


@dataclass(frozen=True, slots=True)
class LiveTool:
    """A registration and its health as the feed last said.

    ``heartbeat_ok``: within the TTL at the last sweep; ``check_status``:
    ``passing``/``critical`` once active checks have decided, else ``None``.
    """

    registration: ModelToolRegistration
    heartbeat_ok: bool = True
    check_status: str | None = None
    check_output: str = ""
    version: int = 1  # txid of the tool's last event
    created_version: int = 1

    @property
    def health(self) -> str:
        """``critical`` (failing checks), ``stale`` (heartbeat past the TTL) or ``healthy``."""
        if self.check_status == "critical":
            return "critical"
        return "healthy" if self.heartbeat_ok else "stale"


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
        self._tools: dict[str, LiveTool] = {}
        self._key_versions: dict[str, int] = {}
        self._members: dict[str, set[str]] = {}  # key -> tool ids that belong to it
        self._floor = 1  # the load's head: no version is below it
        self._last = 1  # txid of the last event applied
        self._changed = asyncio.Event()
        self._memo: dict[Hashable, tuple[int, bytes]] = {}
        self._generation = 0
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
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        failing = False  # log once per outage, not at every retry
        while True:
            try:
                cursor = await self._load()
                if failing:
                    failing = False
                    logger.info("live view is current again")
                async for event in self.hub.subscribe(cursor):
                    self._apply(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # feed lost, lagged, database away: reload when back
                self.current = False
                if not isinstance(exc, OmniNodeBridgeError):
                    logger.error("live view failed; reloading", exc_info=exc)
                elif not failing:
                    logger.warning("live view stopped following (%s); reloading", exc)
                failing = True
                await asyncio.sleep(RETRY_SECONDS)

    async def _load(self) -> str:
        repository = self.repository
        cursor = await repository.feed.head_cursor()
        tools: dict[str, LiveTool] = {}
        page_cursor: str | None = None
        while True:
            page = await repository.find_tools(limit=LOAD_PAGE, cursor=page_cursor, bounded=False)
            for registration in page.items:
                tools[registration.tool_id] = LiveTool(registration)
            if page.next_cursor is None:
                break
            page_cursor = page.next_cursor
        for row in await repository.client.fetch(Q["all_health"]):
            tool = tools.get(row["tool_id"])
            if tool is not None:
                tools[row["tool_id"]] = replace(
                    tool,
                    heartbeat_ok=row["heartbeat_status"] != "stale",
                    check_status=row["check_status"] if row["checked"] else None,
                    check_output=row["last_error"] or "",
                )
        floor = max(1, FeedPosition.parse(cursor).txid)
        self._floor = self._last = max(self._floor, self._last, floor)
        self._tools = {
            tool_id: replace(t, version=self._floor, created_version=self._floor)
            for tool_id, t in tools.items()
        }
        self._key_versions.clear()
        self._members = {}
        for tool_id, tool in self._tools.items():
            for key in self.keys(tool.registration):
                self._members.setdefault(key, set()).add(tool_id)
        self.current = True
        self._ready.set()
        self._signal()
        return cursor

    # -- changes ------------------------------------------------------------------

    def _apply(self, event: ChangeEvent) -> None:
        txid = FeedPosition.parse(event.cursor).txid
        tool_id = event.tool_id
        tool = self._tools.get(tool_id)
        kind = event.kind
        after: LiveTool | None = tool
        if kind is ChangeKind.DELETED:
            after = None
        elif kind in (ChangeKind.CREATED, ChangeKind.UPDATED) and event.registration is not None:
            if tool is None:
                after = LiveTool(event.registration, version=txid, created_version=txid)
            else:
                after = replace(tool, registration=event.registration, heartbeat_ok=True)
        elif tool is not None and kind in (ChangeKind.STALE, ChangeKind.HEALTHY):
            after = replace(tool, heartbeat_ok=kind is ChangeKind.HEALTHY)
        elif tool is not None and kind in (ChangeKind.CRITICAL, ChangeKind.PASSING):
            after = replace(tool, check_status=kind.value, check_output=event.reason or "")
        before = set(self.keys(tool.registration)) if tool is not None else set()
        now: set[str] = set()
        if after is None:
            self._tools.pop(tool_id, None)
        else:
            after = replace(after, version=txid)
            self._tools[tool_id] = after
            now = set(self.keys(after.registration))
        for key in before - now:
            members = self._members.get(key)
            if members is not None:
                members.discard(tool_id)
                if not members:
                    del self._members[key]
        for key in now:
            self._members.setdefault(key, set()).add(tool_id)
        for key in before | now:
            self._key_versions[key] = txid
        self._last = max(self._last, txid)
        self._signal()

    def _signal(self) -> None:
        self._generation += 1  # every change, even within one transaction's events
        self._changed.set()
        self._changed = asyncio.Event()

    # -- reading ------------------------------------------------------------------

    def tools(self) -> Iterable[LiveTool]:
        """Every tool, in no particular order."""
        return self._tools.values()

    def get(self, tool_id: str) -> LiveTool | None:
        return self._tools.get(tool_id)

    def members(self, key: str) -> list[LiveTool]:
        """The tools that belong to ``key`` now."""
        tools = self._tools
        return [tools[t] for t in self._members.get(key, ()) if t in tools]

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
