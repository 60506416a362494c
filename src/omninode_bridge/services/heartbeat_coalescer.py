"""HeartbeatCoalescer: many callers' heartbeats written in one statement.

A caller's :meth:`~HeartbeatCoalescer.submit` joins the open batch and waits.
The batch is written when ``window`` seconds have passed since its first
request or when it holds ``max_batch`` requests, whichever comes first; one
batch is in flight at a time, and requests arriving meanwhile form the next
(so under load batches grow by themselves and the window only bounds the
wait of a quiet server). Every waiter is answered only after its batch's
statement returned, i.e. committed: nothing is acknowledged before it is
durable. Answers are per request (the writer judges each alone); an error of
the statement fails every request of that batch and the next batch is tried
afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from omninode_bridge.errors import RegistryUnavailableError

__all__ = ["HeartbeatCoalescer"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Writes a batch: one answer per request, in order.
Writer = Callable[[Sequence[T]], Awaitable[Sequence[R]]]


class HeartbeatCoalescer(Generic[T, R]):
    """Batches requests for ``write``; see the module docstring.

    ``write`` gets the requests of one batch in arrival order (duplicates
    included) and must return one answer per request, in the same order. Its
    exceptions reach every waiter of that batch unchanged. Create and use it in
    one event loop; :meth:`aclose` writes what is pending, then refuses more.
    """

    def __init__(self, write: Writer[T, R], *, window: float, max_batch: int) -> None:
        if window < 0:
            raise ValueError(f"window must be >= 0 seconds, got {window!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch!r}")
        self._write = write
        self._window = window
        self._max = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._opened_at = 0.0  # loop time of the open batch's first request
        self._arrived = asyncio.Event()  # the open batch is not empty
        self._full = asyncio.Event()  # the open batch holds max_batch requests
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0  # batches written, and the requests in them (for tests)
        self.requests = 0

    async def submit(self, request: T) -> R:
        """``request``'s answer, once its batch is written.

        Raises what the batch's write raised; RegistryUnavailableError after
        :meth:`aclose`. A caller cancelled while it waits leaves its request in
        the batch (it is written; nobody reads the answer) and the others
        unaffected.
        """
        if self._closed:
            raise RegistryUnavailableError("the server is shutting down: heartbeat not recorded")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if not self._pending:
            self._opened_at = loop.time()
        self._pending.append((request, future))
        self._arrived.set()
        if len(self._pending) >= self._max:
            self._full.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="heartbeat coalescer")
        return await future

    async def _run(self) -> None:
        """Write batch after batch while requests keep arriving; after aclose(), until none."""
        loop = asyncio.get_running_loop()
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while True:
                if not self._pending:
                    if self._closed:
                        return
                    await self._arrived.wait()
                    continue
                wait = self._opened_at + self._window - loop.time()
                if wait > 0 and not self._full.is_set() and not self._closed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), wait)
                batch = self._take()
                await self._write_batch(batch)
                batch = []
        finally:
            # Cancelled (a shutdown that could not wait) or a bug: nobody is left waiting.
            stopped = RegistryUnavailableError(
                "the server stopped before the heartbeat was written"
            )
            self._fail(batch, stopped)
            self._fail(self._take_all(), stopped)

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The open batch (at most max_batch requests); the rest opens the next one."""
        # What is left waited at least as long as the batch taken: it keeps _opened_at
        # (already past) and goes next without waiting.
        batch, self._pending = self._pending[: self._max], self._pending[self._max :]
        if not self._pending:
            self._arrived.clear()
        if len(self._pending) < self._max:
            self._full.clear()
        return batch

    def _take_all(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch, self._pending = self._pending, []
        self._arrived.clear()
        self._full.clear()
        return batch

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.batches += 1
        self.requests += len(batch)
        try:
            answers = await self._write([request for request, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"the writer answered {len(answers)} of {len(batch)} requests")
        except Exception as exc:  # every waiter gets it; the next batch is tried afresh
            logger.warning("a heartbeat batch of %d failed: %s", len(batch), exc)
            self._fail(batch, exc)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():  # its caller was cancelled
                future.set_result(answer)

    @staticmethod
    def _fail(batch: list[tuple[T, asyncio.Future[R]]], exc: BaseException) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)

    async def aclose(self) -> None:
        """Write the pending requests (their callers get their answers), then refuse more.

        Idempotent. Cancelled while it waits, it fails what is still pending
        with RegistryUnavailableError rather than leave a caller hanging.
        """
        self._closed = True
        self._full.set()  # no more waiting for the window
        self._arrived.set()  # wake the loop so that it can end
        task = self._task
        if task is not None:
            await task  # cancelling aclose() cancels the loop, which fails the rest
        elif self._pending:  # pragma: no cover - submit() always starts the loop
            self._fail(self._take_all(), RegistryUnavailableError("the server stopped"))
