"""``/metrics``, ``/openapi.json``, ``/docs`` and ``/redoc``: pages about the server itself.

They are served here rather than by FastAPI's built-ins (the app factory turns
those off) so that ``TOOLREG_READS_REQUIRE_TOKEN`` covers them like every other
read: with it, each needs a valid token of any scope. Swagger UI and ReDoc
fetch the spec from the browser without a token, so behind the setting those
two pages render only where the ``Authorization`` header is added for them (a
proxy); the spec itself is always reachable with a token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from omninode_bridge.api.auth import Reader
from omninode_bridge.api.routes.common import State

__all__ = ["DOCS_URL", "OPENAPI_URL", "REDOC_URL", "router"]

OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"


async def _may_read(principal: Reader) -> None:
    """Lets the request through when it may read (401 problem+json when it may not)."""


def _root_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def router(*, guarded: bool) -> APIRouter:
    """The meta pages; ``guarded``: each needs what reads need (``Settings.reads_require_token``).

    Unguarded, they are open whatever ``Authorization`` header comes along, as
    FastAPI's own pages were.
    """
    meta = APIRouter(dependencies=[Depends(_may_read)] if guarded else [])

    @meta.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(state: State) -> Response:
        return Response(await state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @meta.get(OPENAPI_URL, include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        app: FastAPI = request.app
        schema: dict[str, Any] = app.openapi()  # built once, then cached by FastAPI
        root_path = _root_path(request)
        if root_path and root_path not in {s.get("url") for s in schema.get("servers", [])}:
            schema = {**schema, "servers": [{"url": root_path}, *schema.get("servers", [])]}
        return JSONResponse(schema)

    @meta.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        title = f"{request.app.title} - Swagger UI"
        return get_swagger_ui_html(openapi_url=_root_path(request) + OPENAPI_URL, title=title)

    @meta.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        title = f"{request.app.title} - ReDoc"
        return get_redoc_html(openapi_url=_root_path(request) + OPENAPI_URL, title=title)

    return meta
