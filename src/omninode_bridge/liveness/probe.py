"""One active health check: an HTTP GET of a tool's ``health_endpoint``, bounded every way.

A check passes on a 2xx answer and fails on anything else: another status, no
answer within the timeout, a refused or reset connection, a TLS error, a
redirect to another host, more than three redirects, or a URL that is not
http/https. Redirects within the same host are followed by hand (the client
never follows them itself); at most ``max_body_bytes`` of a body are read (raw,
with ``accept-encoding: identity``, so nothing is decompressed), then the
connection is dropped. A failed check is a result, not an exception: only
programming errors escape :func:`probe`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from omninode_bridge import __version__
from omninode_bridge.settings import Settings

__all__ = ["MAX_BODY_BYTES", "MAX_REDIRECTS", "ProbeResult", "make_check_client", "probe"]

MAX_BODY_BYTES = 64 * 1024
MAX_REDIRECTS = 3
_EXCERPT_BYTES = 200
_SCHEMES = ("http", "https")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one check: ``error`` says why it failed (``None`` when ``ok``)."""

    ok: bool
    status: int | None
    latency: float
    error: str | None = None
    timed_out: bool = False  # no answer within the timeout: the tool hangs


class _Failed(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def make_check_client(settings: Settings) -> httpx.AsyncClient:
    """The one HTTP client a checker shares across passes: no redirects, no proxies from env.

    Connections are capped at the check concurrency and never kept alive: each
    check opens a fresh connection, so it also proves the tool still accepts
    them, no idle socket to every tool stays open between passes, and httpcore's
    pool is spared its per-request scan of idle connections (measured here: a
    third of the CPU per check at a concurrency of 50).
    """
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(settings.check_timeout_seconds),
        limits=httpx.Limits(
            max_connections=settings.check_concurrency, max_keepalive_connections=0
        ),
        headers={
            "user-agent": f"omninode-bridge-health-check/{__version__}",
            "accept-encoding": "identity",
        },
    )


async def _get_once(
    client: httpx.AsyncClient, url: httpx.URL, max_body_bytes: int
) -> tuple[int, str | None, bytes]:
    response = await client.send(client.build_request("GET", url), stream=True)
    try:
        excerpt = b""
        received = 0
        async for chunk in response.aiter_raw():
            if len(excerpt) < _EXCERPT_BYTES:
                excerpt += chunk[: _EXCERPT_BYTES - len(excerpt)]
            received += len(chunk)
            if received >= max_body_bytes:
                break  # the rest is not needed; the connection is dropped
        return response.status_code, response.headers.get("location"), excerpt
    finally:
        await response.aclose()


async def _check(
    client: httpx.AsyncClient, url: str, max_body_bytes: int, max_redirects: int
) -> int:
    current = httpx.URL(url)
    origin = current.host
    for _ in range(max_redirects + 1):
        if current.scheme not in _SCHEMES or not current.host:
            raise _Failed(f"only absolute http/https URLs are checked, not {str(current)!r}")
        status, location, excerpt = await _get_once(client, current, max_body_bytes)
        if 300 <= status < 400 and location:
            target = current.join(location)
            if target.host != origin:
                raise _Failed(f"HTTP {status} redirect to another host ({target.host})", status)
            current = target
            continue
        if 200 <= status < 300:
            return status
        text = excerpt.decode("utf-8", errors="replace").strip()
        raise _Failed(f"HTTP {status}" + (f": {text}" if text else ""), status)
    raise _Failed(f"more than {max_redirects} redirects")


async def probe(
    client: httpx.AsyncClient,
    url: str,
    *,
    timeout: float,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_redirects: int = MAX_REDIRECTS,
) -> ProbeResult:
    """Check ``url`` once; ``timeout`` bounds the whole check, redirects included."""
    started = time.perf_counter()
    status: int | None = None
    try:
        async with asyncio.timeout(timeout):
            status = await _check(client, url, max_body_bytes, max_redirects)
    except TimeoutError:
        return ProbeResult(
            False, None, time.perf_counter() - started, f"no answer within {timeout:g}s", True
        )
    except _Failed as exc:
        status, error = exc.status, str(exc)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    else:
        return ProbeResult(True, status, time.perf_counter() - started)
    return ProbeResult(False, status, time.perf_counter() - started, error)
