"""What the app's routes share, created by the app factory (never at module level)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from omninode_bridge.api.metrics import Metrics
from omninode_bridge.services import (
    PostgresClient,
    ToolDiscoveryService,
    ToolRegistrationRepository,
)
from omninode_bridge.services.feed_hub import FeedHub
from omninode_bridge.services.heartbeat_coalescer import HeartbeatCoalescer
from omninode_bridge.services.live_view import LiveView
from omninode_bridge.services.tokens import Principal, TokenService
from omninode_bridge.settings import Settings

__all__ = ["AppState", "get_state"]


@dataclass
class AppState:
    """Services of one running app."""

    settings: Settings
    client: PostgresClient
    repository: ToolRegistrationRepository
    tokens: TokenService
    metrics: Metrics
    hub: FeedHub
    discovery: ToolDiscoveryService
    live_view: LiveView  # registrations and health for the Consul API and Prometheus SD
    background: list[Any] = field(default_factory=list)
    # POST /v1/tools/{id}/heartbeat's (secret, tool_id) requests, written in batches;
    # None when TOOLREG_HEARTBEAT_BATCH_WINDOW_MS is 0 (one statement per request).
    heartbeats: HeartbeatCoalescer[tuple[str, str], Principal | None] | None = None
    # Set when the server begins shutting down: endless responses (SSE) end then,
    # so that draining in-flight requests does not wait for them.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


async def get_state(request: Request) -> AppState:
    """The app's state (a FastAPI dependency; async, so it never goes to the threadpool)."""
    state: AppState = request.app.state.toolreg
    return state
