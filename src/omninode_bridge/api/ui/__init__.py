"""The web console at ``/ui/``: Jinja2 page shells, plain JavaScript, assets served by the package.

``install(app, settings)`` adds the pages, the static assets (``/ui/static``)
and the one JSON endpoint the console needs beyond the registry's API
(``POST /v1/console/tools``: table rows with health and the counts). The
pages read the API like any client; nothing is fetched from anywhere else.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from omninode_bridge.api.ui import data, pages
from omninode_bridge.settings import Settings

__all__ = ["install"]

STATIC_URL = "/ui/static"


class _Assets(StaticFiles):
    """The console's static files, marked so that no browser sniffs another type."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install(app: FastAPI, settings: Settings) -> None:
    """Add the console to ``app``."""
    app.include_router(data.router)
    app.include_router(pages.router(settings))
    app.mount(
        STATIC_URL, _Assets(packages=[("omninode_bridge.api.ui", "static")]), name="ui-static"
    )
