"""Change notifications for MCP listeners, from the live view.

Each tool is the MCP resource ``toolreg://tools/<tool_id>``. When the set of
tools changes, listeners that asked for ``resourcesListChanged`` hear
``notifications/resources/list_changed``; when a tool's registration or health
changes (or it appears, or is deleted), listeners subscribed to its URI hear
``notifications/resources/updated``. Both are level triggers: a listener
re-reads what it cares about. Bursts are coalesced (at most one comparison
every ``COALESCE_SECONDS``). A comparison looks only at the tools the view
says the changes touched (:meth:`LiveView.changes_since`); after a reload of
the view it compares every tool, so nothing that changed meanwhile goes
unannounced.

The notifier starts with the first ``subscriptions/listen`` request, so a
registry nobody listens to never loads the live view for it.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

from mcp.server.subscriptions import ResourcesListChanged, ResourceUpdated, SubscriptionBus

from omninode_bridge.api.consul.routes import live_view
from omninode_bridge.api.state import AppState
from omninode_bridge.errors import OmniNodeBridgeError, RegistryUnavailableError
from omninode_bridge.services.live_view import LiveView
from omninode_bridge.tasks import cancel_and_wait

__all__ = ["ChangeNotifier", "tool_uri"]

logger = logging.getLogger(__name__)

TOOL_URI_PREFIX = "toolreg://tools/"
COALESCE_SECONDS = 0.05
RETRY_SECONDS = 1.0


def tool_uri(tool_id: str) -> str:
    """The MCP resource URI of a tool (tool ids need no escaping; anything else is escaped)."""
    return TOOL_URI_PREFIX + quote(tool_id, safe=":@")


def _versions(view: LiveView) -> dict[str, int]:
    return {t.tool_id: t.version for t in view.tools()}


def _changes(
    known: dict[str, int], view: LiveView, touched: set[str] | None
) -> list[ResourcesListChanged | ResourceUpdated]:
    """The notifications for what changed in ``view`` since ``known`` (its tools'
    versions then, brought up to date here). ``touched``: the only tools that can have
    changed (``None``: any of them; every tool is compared)."""
    if touched is None:
        now = _versions(view)
        touched = known.keys() | now.keys()
    else:
        now = {}
        for tool_id in touched:
            tool = view.get(tool_id)
            if tool is not None:
                now[tool_id] = tool.version
    listed = False
    updated: list[ResourcesListChanged | ResourceUpdated] = []
    for tool_id in sorted(touched):
        was, is_now = known.get(tool_id), now.get(tool_id)
        if was == is_now:
            continue
        listed |= was is None or is_now is None
        if is_now is None:
            del known[tool_id]
        else:
            known[tool_id] = is_now
        updated.append(ResourceUpdated(uri=tool_uri(tool_id)))
    return [ResourcesListChanged(), *updated] if listed else updated


class ChangeNotifier:
    """Publishes the live view's changes on the MCP server's subscription bus."""

    def __init__(self, bus: SubscriptionBus) -> None:
        self.bus = bus
        self._task: asyncio.Task[None] | None = None
        self._watching = asyncio.Event()

    async def ensure_started(self, state: AppState) -> None:
        """Start (once) and wait until the view is loaded and being watched, so that a
        listener acknowledged after this returns misses no change.

        Raises RegistryUnavailableError when the view does not load within
        ``TOOLREG_CONNECT_TIMEOUT``.
        """
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(state), name="toolreg-mcp-notifier")
        try:
            async with asyncio.timeout(state.settings.connect_timeout):
                await self._watching.wait()
        except TimeoutError:
            raise RegistryUnavailableError("the registry's catalog is not loaded yet") from None

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self, state: AppState) -> None:
        while True:
            try:
                view = await live_view(state)
            except OmniNodeBridgeError as exc:
                logger.warning("MCP notifications wait for the live view: %s", exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            await self._follow(view)

    async def _follow(self, view: LiveView) -> None:
        known = _versions(view)
        seen = view.generation
        while True:
            self._watching.set()
            # No await between the comparison that found nothing and this wait: a change
            # applied in between would set an event nobody waits on any more.
            await view.changed()
            await asyncio.sleep(COALESCE_SECONDS)
            while True:
                # The tools the changes touched (a million-tool view is not walked per
                # change), or all of them after a reload.
                touched = view.changes_since(seen)
                seen = view.generation
                events = _changes(known, view, touched)
                if not events:
                    break
                for event in events:
                    await self.bus.publish(event)
