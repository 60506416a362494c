"""What every ``toolreg`` command shares: settings, async running, one-line errors."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console

from omninode_bridge.settings import Settings, load_settings

__all__ = ["console", "err_console", "run_async", "settings_from"]

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
