"""What every ``toolreg`` command shares: settings, async running, the database, output."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import orjson
import typer
from rich.console import Console

from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.settings import Settings, load_settings

__all__ = [
    "console",
    "database",
    "err_console",
    "print_json",
    "run_async",
    "settings_from",
]

T = TypeVar("T")

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def settings_from(ctx: typer.Context) -> Settings:
    """The settings for this invocation, read once from the environment."""
    obj: dict[str, Any] = ctx.ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = load_settings()
    settings: Settings = obj["settings"]
    return settings


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine to completion."""
    return asyncio.run(coro)


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[ToolRegistrationRepository]:
    """A repository on a small pool, closed when the command ends."""
    small = settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 4})
    async with PostgresClient(small) as client:
        yield ToolRegistrationRepository(client)


def print_json(value: Any) -> None:
    """Machine-readable output: one JSON document on stdout."""
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
