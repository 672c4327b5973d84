"""The web page: a chat view at ``/`` and a status view at ``/status``.

Plain HTML, CSS and JavaScript files shipped inside the package
(``ragserve/serve/static``), so there is no build step and nothing to fetch.
The pages themselves hold no data and need no key; everything they show
comes from the API (``/query``, ``/feedback``, ``/api/status``) under the
same auth and rate limits as any other client.

Answers and snippets are untrusted text (a crawled page may contain
``<script>``): the scripts render them with ``textContent`` only, and a strict
Content-Security-Policy (scripts from this origin only, no inline script or
style, no plugins, no framing) stops anything that slipped through from running.
"""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import APIRouter, HTTPException, Response

router = APIRouter(include_in_schema=False)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Small files, changed by upgrades: revalidate rather than serve a stale script.
    "Cache-Control": "no-cache",
}
#: Every file the page may load, with its type; nothing else is served from the folder.
ASSETS = {
    "chat.js": "text/javascript; charset=utf-8",
    "status.js": "text/javascript; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "theme.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
HTML = "text/html; charset=utf-8"


@functools.cache
def static_file(name: str) -> bytes:
    """A file of the page, read once from the installed package."""
    return resources.files("ragserve.serve").joinpath("static", name).read_bytes()


def _page(name: str, media_type: str) -> Response:
    return Response(static_file(name), media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/")
async def chat_page() -> Response:
    return _page("index.html", HTML)


@router.get("/status")
async def status_page() -> Response:
    return _page("status.html", HTML)


@router.get("/ui/{name}")
async def asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, f"no such file of the web page: {name}")
    return _page(name, media_type)


__all__ = ["CONTENT_SECURITY_POLICY", "router", "static_file"]
