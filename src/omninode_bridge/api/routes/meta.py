"""``/metrics``, ``/openapi.json``, ``/docs`` and ``/redoc``: pages about the server itself.

They are served here rather than by FastAPI's built-ins (the app factory turns
those off) so that ``TOOLREG_READS_REQUIRE_TOKEN`` covers them like every other
read: with it, each needs a valid token of any scope. Swagger UI and ReDoc
fetch the spec from the browser without a token, so behind the setting those
two pages render only where the ``Authorization`` header is added for them (a
proxy); the spec itself is always reachable with a token.

Both pages work offline: Swagger UI and ReDoc come from the ``fastapi-offline``
package and are served under ``/docs/static/`` (open, like any static file);
the pages reference no other host, start their viewer from a script of ours
(no inline script) and carry a Content-Security-Policy that says so.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import fastapi_offline
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from omninode_bridge.api.auth import Reader
from omninode_bridge.api.routes.common import State

__all__ = ["DOCS_CSP", "DOCS_URL", "OPENAPI_URL", "REDOC_URL", "router"]

OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
DOCS_STATIC = "/docs/static"
_BUNDLED = Path(fastapi_offline.__file__).parent / "static"
_ASSETS = {  # name -> media type: the files fastapi-offline ships
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
# Swagger UI and ReDoc set inline styles and data: images, and ReDoc searches in a
# blob: worker; scripts and connections stay on this origin.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_INIT_SCRIPTS = {
    "swagger-init.js": """"use strict";
(function () {
  var node = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: node.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
""",
    "redoc-init.js": """"use strict";
(function () {
  var node = document.getElementById("redoc");
  Redoc.init(node.getAttribute("data-spec-url"), { hideDownloadButton: false }, node);
})();
""",
}


class _Viewer(NamedTuple):
    """A spec viewer's page. ``mount`` is the element it renders into, with ``{spec}``
    where the spec's URL goes; ``scripts`` and ``stylesheet`` are files under
    ``DOCS_STATIC``."""

    name: str
    mount: str
    scripts: tuple[str, ...]
    stylesheet: str | None = None


_VIEWERS = {  # URL -> the viewer served there
    DOCS_URL: _Viewer(
        "Swagger UI",
        '<div id="swagger-ui" data-openapi-url="{spec}"></div>',
        ("swagger-ui-bundle.js", "swagger-init.js"),
        "swagger-ui.css",
    ),
    REDOC_URL: _Viewer(
        "ReDoc",
        '<div id="redoc" data-spec-url="{spec}"></div>',
        ("redoc.standalone.js", "redoc-init.js"),
    ),
}


def _viewer_page(request: Request, viewer: _Viewer) -> HTMLResponse:
    """``viewer`` on this server's spec, under the docs' Content-Security-Policy."""
    root = _root_path(request)
    static = root + DOCS_STATIC
    title = f"{request.app.title} - {viewer.name}"
    head = (
        f'<link rel="stylesheet" href="{static}/{viewer.stylesheet}">' if viewer.stylesheet else ""
    )
    body = "\n".join(
        [
            viewer.mount.format(spec=html.escape(root + OPENAPI_URL)),
            *(f'<script src="{static}/{script}"></script>' for script in viewer.scripts),
        ]
    )
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<link rel="icon" type="image/png" href="{static}/favicon.png">
{head}
</head>
<body>
{body}
</body>
</html>
"""
    return HTMLResponse(
        page,
        headers={
            "Content-Security-Policy": DOCS_CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


async def _may_read(principal: Reader) -> None:
    """Lets the request through when it may read (401 problem+json when it may not)."""


def _root_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def router(*, guarded: bool) -> APIRouter:
    """The meta pages; ``guarded``: each needs what reads need (``Settings.reads_require_token``).

    Unguarded, they are open whatever ``Authorization`` header comes along, as
    FastAPI's own pages were.
    """
    meta = APIRouter()
    guard = [Depends(_may_read)] if guarded else []

    @meta.get("/metrics", include_in_schema=False, dependencies=guard)
    async def prometheus_metrics(state: State) -> Response:
        return Response(await state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @meta.get(OPENAPI_URL, include_in_schema=False, dependencies=guard)
    async def openapi(request: Request) -> JSONResponse:
        app: FastAPI = request.app
        schema: dict[str, Any] = app.openapi()  # built once, then cached by FastAPI
        root_path = _root_path(request)
        if root_path and root_path not in {s.get("url") for s in schema.get("servers", [])}:
            schema = {**schema, "servers": [{"url": root_path}, *schema.get("servers", [])]}
        return JSONResponse(schema)

    def viewer_route(viewer: _Viewer) -> Callable[[Request], Awaitable[HTMLResponse]]:
        async def viewer_page(request: Request) -> HTMLResponse:
            return _viewer_page(request, viewer)

        return viewer_page

    for url, viewer in _VIEWERS.items():
        meta.add_api_route(
            url,
            viewer_route(viewer),
            methods=["GET"],
            include_in_schema=False,
            dependencies=guard,
            name=url.strip("/"),
        )

    @meta.get(DOCS_STATIC + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        """Swagger UI's and ReDoc's files, open to all: they hold nothing of the registry."""
        headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
        if name in _INIT_SCRIPTS:
            return Response(_INIT_SCRIPTS[name], media_type="text/javascript", headers=headers)
        if name not in _ASSETS:
            raise HTTPException(404, f"no file {name!r} under {DOCS_STATIC}")
        return FileResponse(_BUNDLED / name, media_type=_ASSETS[name], headers=headers)

    return meta
