"""The call page: served by the SFU at `/call`, shown by Matrix clients as a room widget.

The SFU serves the page itself so that the page, its `/get_token` and its `/ws` share one
origin: the page's CSP can then say `connect-src 'self'` and, where broadcasts fan out over
edges (`sfu.edge`), the edges' WebSocket origins, nothing else; and no CORS or cookie question
arises. The page connects where `/get_token` sent it: a viewer to an edge, others here.
Everything the page knows about the user comes from the widget API
(`get_openid`); the SFU checks that token with the homeserver and decides the grant, so the
page holds no policy of its own (it only avoids asking for a camera the token cannot publish).

The module puts the page into lesson rooms, the broadcast room and every class news room
(there the widget joins the school's broadcast: families watch it without joining the
broadcast room); the widget's URL is built by `synapse_sferum.policy.call_widget.widget_state`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from sferum_shared.web import serve_asset
from sferum_shared.widgets import page_assets

STATIC = Path(__file__).parent / "static"
_ASSETS = page_assets(STATIC, "call.js", "call.css")


def websocket_origin(url: str) -> str:
    """The ws(s) origin a page uses to reach the SFU at `url` (http(s) or ws(s))."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


def page_headers(edge_urls: Iterable[str]) -> dict[str, str]:
    """The page runs only its own script and talks only to its own origin (`/get_token`,
    `/ws`) and the edges'; it may be framed by any client, as Element's origin varies."""
    connect = " ".join(["'self'", *sorted({websocket_origin(url) for url in edge_urls})])
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'self'; style-src 'self'; connect-src {connect}; "
            "media-src 'self' blob: mediastream:; img-src 'self' data:; base-uri 'none'; "
            "form-action 'none'"
        ),
        "Referrer-Policy": "no-referrer",  # the URL fragment may hold a JWT in test mode
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self)",
    }


async def _static(request: web.Request) -> web.Response:
    return serve_asset(_ASSETS, request)


def page_routes(edge_urls: Iterable[str] = ()) -> list[web.RouteDef]:
    """`GET /call` and its script and style; the SFU app mounts them next to `/ws`."""
    headers = page_headers(edge_urls)

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            body=(STATIC / "call.html").read_bytes(),
            content_type="text/html",
            charset="utf-8",
            headers=headers,
        )

    return [web.get("/call", page), web.get("/call/static/{name}", _static)]
