"""What the Consul tests share besides fixtures."""

from __future__ import annotations

import asyncio

import httpx


async def until_listed(base_url: str, service: str, count: int) -> None:
    """Wait (at most 10 s) until ``service`` has ``count`` instances in the catalog.

    The Consul face answers from the live view, which follows the change feed:
    a write is visible there a few milliseconds after it is acknowledged.
    """
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        for _ in range(200):
            if len((await http.get(f"/v1/catalog/service/{service}")).json()) >= count:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{service} never had {count} instances")
