"""Consul blocking queries: ``?index=N&wait=D`` held until the answer's index moves past N.

The wait is served from the live view (which follows the one change feed of
the process): a blocked request holds no database connection, and one change
wakes every request blocked on it. ``wait`` uses Go's duration syntax
(``120000ms``, ``5s``, ``1m30s``): default 5 minutes, at most 10, plus up to
wait/16 of jitter, as Consul does. A client whose index is ahead of ours (it
talked to a registry on another database) is answered at once, so it resets.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re

from omninode_bridge.errors import ValidationFailedError
from omninode_bridge.services.live_view import LiveView

__all__ = ["DEFAULT_WAIT", "MAX_WAIT", "block", "parse_wait"]

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wait(text: str | None) -> float:
    """Seconds of a Go duration (``None`` or empty: the default), capped at MAX_WAIT.

    Raises ValidationFailedError naming ``wait`` for anything else.
    """
    if not text:
        return DEFAULT_WAIT
    pos, total = 0, 0.0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise ValidationFailedError(
                [("wait", f"{text[:40]!r} is not a duration such as 120000ms, 5s or 1m30s")]
            )
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return min(total, MAX_WAIT)


async def block(
    view: LiveView, key: str | None, index: int | None, wait: float, stopping: asyncio.Event
) -> None:
    """Return once ``view.version(key)`` differs from ``index``, ``wait`` (plus jitter) ran out,
    or the server is stopping. ``index`` of ``None`` or 0 returns at once."""
    if not index:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait + random.uniform(0, wait / 16)  # noqa: S311 - jitter, not secrets
    while view.version(key) == index and not stopping.is_set():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        changed = asyncio.ensure_future(view.changed())
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({changed, stop}, timeout=remaining, return_when="FIRST_COMPLETED")
        finally:
            for task in (changed, stop):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
