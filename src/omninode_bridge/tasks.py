"""Stopping background tasks: the one way the package cancels a task and waits for it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel every task (``None`` skipped), then wait for each to finish.

    All are cancelled before any is awaited, so they wind down together. A
    task's ``CancelledError`` is swallowed; any other exception it ends with is
    raised, as awaiting it would.
    """
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
