"""Example requests and responses of the HTTP API, for the OpenAPI document.

One copy of each payload, reused by the routes: :func:`body` for a request's
``openapi_examples``, :func:`answer` for a response's ``example``. Each one is a
valid instance of its schema (tests/api/test_openapi.py checks them all against
the served document), and they tell one story: the tool ``stamper-1`` declares
the operation ``stamp``. FastAPI leaves ``None`` values out of the document it
serves, so a required field's example value is never ``None``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CONSOLE_PAGE",
    "CONSOLE_QUERY",
    "CREATED_TOKEN",
    "EXPLANATION",
    "HEARTBEATS",
    "HEARTBEATS_RESULT",
    "PAGE",
    "PROMETHEUS_TARGETS",
    "READY",
    "REGISTRATION",
    "REGISTRATION_CREATE",
    "REGISTRATION_UPDATE",
    "REGISTRATION_UPDATED",
    "REGISTRATION_WITH_HEALTH",
    "SEARCH",
    "STATUS_OK",
    "TIMELINE",
    "TOKENS",
    "TOKEN_CREATE",
    "WHOAMI",
    "answer",
    "body",
    "content",
]

_REGISTERED = "2026-11-30T08:00:00Z"
_BEAT = "2026-11-30T09:41:07.125Z"
_PASSED = "2026-11-30T08:00:20Z"
_DAY_AGO = "2026-11-29T09:42:00Z"
_NOW = "2026-11-30T09:42:00Z"

REGISTRATION_CREATE: dict[str, Any] = {
    "tool_id": "stamper-1",
    "node_type": "effect",
    "capabilities": {"operations": ["stamp"], "max_file_size": 10_000_000},
    "endpoints": {"stamp": "http://stamper-1.internal:8000/stamp"},
    "metadata": {"version": "1.4.2", "team": "docs"},
    "health_endpoint": "http://stamper-1.internal:8000/health",
}
REGISTRATION: dict[str, Any] = {
    "id": "3f0c6d2e-8a4b-4c1e-9f57-2d1b8e6a0c94",
    **REGISTRATION_CREATE,
    "last_heartbeat": _BEAT,
    "registered_at": _REGISTERED,
    "updated_at": _REGISTERED,
}
REGISTRATION_UPDATE: dict[str, Any] = {"metadata": {"version": "1.5.0", "team": "docs"}}
REGISTRATION_UPDATED: dict[str, Any] = {
    **REGISTRATION,
    **REGISTRATION_UPDATE,
    "updated_at": _NOW,
}
REGISTRATION_WITH_HEALTH: dict[str, Any] = {
    **REGISTRATION,
    "health": {
        "status": "healthy",
        "heartbeat_fresh": True,
        "check_status": "passing",
        "check_since": _PASSED,
        "last_checked_at": "2026-11-30T09:41:00Z",
    },
}
PAGE: dict[str, Any] = {"items": [REGISTRATION], "next_cursor": "eyJhZnRlciI6InN0YW1wZXItMSJ9"}
SEARCH: dict[str, Any] = {
    "capabilities": {"operations": ["stamp"]},
    "node_type": "effect",
    "healthy_within_seconds": 120,
    "where": "$.max_file_size >= 5000000",
    "limit": 50,
}
HEARTBEATS: dict[str, Any] = {"tool_ids": ["stamper-1", "retired-7"]}
HEARTBEATS_RESULT: dict[str, Any] = {"updated": 1, "unknown": ["retired-7"]}

STATUS_OK: dict[str, Any] = {"status": "ok"}
READY: dict[str, Any] = {
    "status": "ready",
    "detail": {
        "database": "ok",
        "latency_ms": 0.41,
        "change_feed": "following",
        "discovery_index": "current",
        "discovery_index_stale_seconds": None,
    },
}

EXPLANATION: dict[str, Any] = {
    "operation": "stamp",
    "declared": 2,
    "routable": 1,
    "summary": "2 registered tools list it: 1 routable; "
    "1 critical (failing health checks) (stamper-2)",
    "tools": [
        {
            "tool_id": "stamper-2",
            "reason": "critical",
            "detail": "health check: critical",
            "since": "2026-11-30T09:30:12Z",
        },
        {"tool_id": "stamper-1", "reason": "routable", "detail": "routable now"},
    ],
}

_PASSING_EVENT: dict[str, Any] = {
    "cursor": "48213-1",
    "kind": "passing",
    "tool_id": "stamper-1",
    "registration_id": None,
    "occurred_at": _PASSED,
    "registration": None,
    "reason": "health check passed",
}
TIMELINE: dict[str, Any] = {
    "tool_id": "stamper-1",
    "start": _DAY_AGO,
    "end": _NOW,
    "bands": [
        {"lane": "heartbeat", "state": "absent", "start": _DAY_AGO, "end": _REGISTERED},
        {"lane": "heartbeat", "state": "fresh", "start": _REGISTERED, "end": _NOW},
        {"lane": "checks", "state": "absent", "start": _DAY_AGO, "end": _REGISTERED},
        {"lane": "checks", "state": "unknown", "start": _REGISTERED, "end": _PASSED},
        {
            "lane": "checks",
            "state": "passing",
            "start": _PASSED,
            "end": _NOW,
        },
    ],
    "transitions": [
        {
            "at": _REGISTERED,
            "lane": "heartbeat",
            "previous": "absent",
            "state": "fresh",
            "kind": "created",
            "reason": None,
        },
        {
            "at": _PASSED,
            "lane": "checks",
            "previous": "unknown",
            "state": "passing",
            "kind": "passing",
            "reason": "health check passed",
        },
    ],
    "events": [_PASSING_EVENT],
}

_TOKEN: dict[str, Any] = {
    "id": "9b2e4f10-5c3d-4a8e-b1f2-6d7c8e9fa0b1",
    "name": "my-team",
    "scope": "write",
    "created_at": "2026-11-30T07:55:00Z",
    "last_used_at": _BEAT,
}
WHOAMI: dict[str, Any] = {key: _TOKEN[key] for key in ("id", "name", "scope")}
TOKENS: list[dict[str, Any]] = [_TOKEN]
TOKEN_CREATE: dict[str, Any] = {"name": "my-team", "scope": "write"}
CREATED_TOKEN: dict[str, Any] = {
    **_TOKEN,
    "last_used_at": None,
    "secret": "trg_Xq3v9J0bW7kPz2LmN8rT5yHc4dF6gA1sE0uI9oK2pQw",
}

PROMETHEUS_TARGETS: list[dict[str, Any]] = [
    {
        "targets": ["stamper-1.internal:8000"],
        "labels": {
            "__metrics_path__": "/metrics",
            "__meta_toolreg_tool_id": "stamper-1",
            "__meta_toolreg_node_type": "effect",
            "__meta_toolreg_health": "healthy",
            "__meta_toolreg_operation_stamp": "true",
            "__meta_toolreg_metadata_version": "1.4.2",
        },
    }
]

CONSOLE_QUERY: dict[str, Any] = {"health": "critical", "tool_id_contains": "stamp", "limit": 50}
CONSOLE_PAGE: dict[str, Any] = {
    "items": [
        {
            "tool_id": "stamper-2",
            "node_type": "effect",
            "operations": ["stamp"],
            "health": "critical",
            "last_heartbeat": _BEAT,
            "owner": "my-team",
        }
    ],
    "next_cursor": "eyJhZnRlciI6InN0YW1wZXItMiJ9",
    "counts": {"total": 2, "healthy": 1, "stale": 0, "critical": 1},
    "position": "48213-1",
    "partial": False,
}


def body(summary: str, value: Any) -> dict[str, dict[str, Any]]:
    """``openapi_examples`` of a request body: one example named ``example``."""
    return {"example": {"summary": summary, "value": value}}


def content(example: Any) -> dict[str, Any]:
    """The part of a ``responses`` entry that gives ``example`` as its JSON answer."""
    return {"content": {"application/json": {"example": example}}}


def answer(example: Any, *statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses`` entries giving ``example`` as the JSON answer of each status (200 if none)."""
    return {status: content(example) for status in statuses or (200,)}
