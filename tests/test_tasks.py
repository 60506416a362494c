"""cancel_and_wait: every task cancelled first, then each awaited."""

from __future__ import annotations

import asyncio

import pytest

from omninode_bridge.tasks import cancel_and_wait


async def test_cancels_and_waits_for_every_task() -> None:
    order: list[str] = []

    async def sleeper(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            order.append(name)
            raise

    first = asyncio.create_task(sleeper("first"))
    second = asyncio.create_task(sleeper("second"))
    await asyncio.sleep(0)
    await cancel_and_wait(first, None, second)
    assert first.cancelled()
    assert second.cancelled()
    assert order == ["first", "second"]


async def test_nothing_to_do() -> None:
    await cancel_and_wait()
    await cancel_and_wait(None)


async def test_a_finished_task_raises_what_it_ended_with() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(fail())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="boom"):
        await cancel_and_wait(task)


async def test_a_timeout_around_it_still_fires() -> None:
    """The caller's own cancellation is not swallowed with its tasks' (a timeout whose
    cancellation vanished would let the caller run on past it)."""

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(3600)  # winds down slowly

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await cancel_and_wait(task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cleanup_after_a_cancellation_still_waits_for_every_task() -> None:
    """Called from a ``finally`` of a cancelled task (a client's __aexit__ under a
    timeout, Ctrl-C): every task is still awaited and what follows still runs."""
    stopped: list[str] = []

    async def worker(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.append(name)

    async def owner() -> None:
        workers = [asyncio.create_task(worker(n)) for n in ("a", "b")]
        try:
            await asyncio.sleep(3600)
        finally:
            await cancel_and_wait(*workers)
            stopped.append("after")  # e.g. deregister, close the pool

    task = asyncio.create_task(owner())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopped == ["a", "b", "after"]
