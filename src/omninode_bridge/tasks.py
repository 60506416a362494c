"""Stopping background tasks: the one way the package cancels a task and waits for it."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel every task (``None`` skipped), then wait for each to finish.

    All are cancelled before any is awaited, so they wind down together. A
    task's ``CancelledError`` is swallowed; any other exception it ends with is
    raised, as awaiting it would. A cancellation of the caller that arrives while
    it waits (a timeout around it, a shutdown) still reaches the caller; one the
    caller was already handling (cleanup in a ``finally``) does not stop the wait.
    """
    current = asyncio.current_task()
    # Cancellations of the caller already under way (it may be cleaning up after one)
    # are not this call's business: only one that arrives while it waits is re-raised.
    pending = current.cancelling() if current is not None else 0
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        try:
            await task
        except asyncio.CancelledError:
            if current is not None and current.cancelling() > pending:
                raise
