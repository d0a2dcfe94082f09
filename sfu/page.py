"""The call page: served by the SFU at `/call`, shown by Matrix clients as a room widget.

The SFU serves the page itself so that the page, its `/get_token` and its `/ws` share one
origin: the page's CSP can then say `connect-src 'self'` and nothing else, and no CORS or
cookie question arises. Everything the page knows about the user comes from the widget API
(`get_openid`); the SFU checks that token with the homeserver and decides the grant, so the
page holds no policy of its own (it only avoids asking for a camera the token cannot publish).

The module puts the page into lesson rooms, the broadcast room and every class news room
(there the widget joins the school's broadcast: families watch it without joining the
broadcast room); the widget's URL is built by `synapse_sferum.calls.widget_state`.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
_STATIC_FILES = {"call.js": "application/javascript", "call.css": "text/css"}
# The page runs only its own script and talks only to its own origin (`/get_token`, `/ws`);
# it may be framed by any client, since Element's origin varies between deployments.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "media-src 'self' blob: mediastream:; img-src 'self' data:; base-uri 'none'; "
        "form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",  # the URL fragment may hold a JWT in test mode
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self)",
}


async def _page(request: web.Request) -> web.Response:
    return web.Response(
        body=(STATIC / "call.html").read_bytes(),
        content_type="text/html",
        charset="utf-8",
        headers=_PAGE_HEADERS,
    )


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = _STATIC_FILES.get(name)
    if content_type is None:  # a fixed list: no path from the request reaches the disk
        raise web.HTTPNotFound()
    return web.Response(
        body=(STATIC / name).read_bytes(),
        content_type=content_type,
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )


def page_routes() -> list[web.RouteDef]:
    """`GET /call` and its script and style; the SFU app mounts them next to `/ws`."""
    return [web.get("/call", _page), web.get("/call/static/{name}", _static)]
