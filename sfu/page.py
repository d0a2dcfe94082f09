"""The call page: served by the SFU at `/call`, shown by Matrix clients as a room widget.

The SFU serves the page itself so that the page, its `/get_token` and its `/ws` share one
origin: the page's CSP can then say `connect-src 'self'` and nothing else, and no CORS or
cookie question arises. Everything the page knows about the user comes from the widget API
(`get_openid`); the SFU checks that token with the homeserver and decides the grant, so the
page holds no policy of its own (it only avoids asking for a camera the token cannot publish).

`widget_state` (pure) is the `im.vector.modular.widgets` content that puts the page into
lesson rooms, the broadcast room and every class news room (there the widget joins the
school's broadcast: families watch it without joining the broadcast room).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

STATIC = Path(__file__).parent / "static"
WIDGET_EVENT = "im.vector.modular.widgets"
WIDGET_ID = "ru.sferum.call"  # the state key: one call widget per room
#: Room kind → the widget's name. A class news room shows the school broadcast.
WIDGET_NAMES = {"lesson": "Урок", "broadcast": "Трансляция", "news": "Трансляция"}
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


def widget_state(kind: str, room_id: str, public_url: str) -> dict[str, Any]:
    """The content of the `im.vector.modular.widgets` event (state key `WIDGET_ID`).

    `room_id` is the room whose call the widget joins. For a lesson or the broadcast room that
    is the room holding the widget, so the URL leaves it to the client (`$matrix_room_id`) and
    the same content fits a recreated room; a class news room names the school's broadcast
    room explicitly, as that is the call its families watch. The user and device come from
    the client's template variables too: `/get_token` needs them as the claimed member, and
    the SFU checks the user against the OpenID token anyway.
    """
    if kind not in WIDGET_NAMES:
        raise ValueError(f"kind must be one of {sorted(WIDGET_NAMES)}, got {kind!r}")
    if not room_id.startswith("!"):
        raise ValueError(f"room_id must be a Matrix room ID (!…), got {room_id!r}")
    if not public_url.startswith(("http://", "https://")):
        raise ValueError(f"public_url must be an http(s) URL, got {public_url!r}")
    room = "$matrix_room_id" if kind != "news" else quote(room_id, safe="")
    url = (
        f"{public_url.rstrip('/')}/call?room={room}&kind={kind}"
        "&user=$matrix_user_id&device=$org.matrix.msc3819.matrix_device_id"
        "&theme=$org.matrix.msc2873.client_theme"
    )
    return {
        "id": WIDGET_ID,
        "type": "m.custom",
        "name": WIDGET_NAMES[kind],
        "url": url,
        "data": {"title": WIDGET_NAMES[kind]},
        "waitForIframeLoad": True,
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
