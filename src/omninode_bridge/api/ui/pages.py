"""The console's pages: Jinja2 shells that hold no registry data.

Every page is the same kind of document: a layout, a form or two, and a
script of the package's own that reads the HTTP API (with the token the
operator entered, from ``sessionStorage``) and renders what it gets with DOM
text nodes, never markup. The pages therefore need no token themselves and
cannot carry a registry value into HTML; the Content-Security-Policy allows
scripts, styles and connections from this origin only, and no inline script.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from omninode_bridge import __version__
from omninode_bridge.settings import Settings

__all__ = ["CONSOLE_CSP", "SECURITY_HEADERS", "router"]

UI = "/ui"
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONSOLE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
PAGES = {
    "tools": "Tools",
    "tool": "Tool",
    "discover": "Discover",
    "admin": "Admin",
}
PATHS = {"tools": "/", "tool": "/tool", "discover": "/discover", "admin": "/admin"}  # under UI


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def router(settings: Settings) -> APIRouter:
    """The pages (``/``, ``/ui/``, ``/ui/tool``, ``/ui/discover``, ``/ui/admin``)."""
    env = Environment(
        loader=PackageLoader("omninode_bridge.api.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        auto_reload=False,
    )
    pages = APIRouter(include_in_schema=False)

    def render(request: Request, page: str, **context: Any) -> HTMLResponse:
        html = env.get_template(f"{page}.html").render(
            page=page,
            title=PAGES[page],
            root=_root(request),
            version=__version__,
            reads_require_token=settings.reads_require_token,
            ttl_seconds=settings.ttl_seconds,
            **context,
        )
        return HTMLResponse(html, headers=dict(SECURITY_HEADERS))

    @pages.get("/")
    async def home(request: Request) -> RedirectResponse:
        return RedirectResponse(_root(request) + UI + "/", status_code=307)

    @pages.get(UI)
    async def ui_bare(request: Request) -> RedirectResponse:
        return RedirectResponse(_root(request) + UI + "/", status_code=307)

    def page_route(page: str) -> Callable[[Request], Awaitable[HTMLResponse]]:
        async def show(request: Request) -> HTMLResponse:
            return render(request, page)

        return show

    for page, path in PATHS.items():
        pages.add_api_route(UI + path, page_route(page), methods=["GET"], name=f"{page}_page")
    return pages
