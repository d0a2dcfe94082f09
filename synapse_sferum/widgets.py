"""The widget side of the Matrix widget API: one script for the diary mini-app and the call page.

Both pages are room widgets that ask the client for an OpenID token and have their own server
check it. The script that speaks the widget API (`static/widget-api.js`) is shared; each page's
server (the bridge, the SFU) serves it from its own origin, as their CSPs allow only 'self'.
Only those two servers import this module (the Synapse module never does), and both have aiohttp.
"""

from __future__ import annotations

from pathlib import Path

import attrs
from aiohttp import web

STATIC = Path(__file__).parent / "static"
WIDGET_API_SCRIPT = "widget-api.js"
_CONTENT_TYPES = {".js": "application/javascript", ".css": "text/css"}


@attrs.frozen
class Asset:
    path: Path
    content_type: str


def page_assets(folder: Path, *names: str) -> dict[str, Asset]:
    """A page's static files by name: its own (in `folder`) and the widget API script.

    A fixed table: no path from a request ever reaches the disk.
    """
    files = {name: folder / name for name in names}
    files[WIDGET_API_SCRIPT] = STATIC / WIDGET_API_SCRIPT
    return {name: Asset(path, _CONTENT_TYPES[path.suffix]) for name, path in files.items()}


def serve_asset(assets: dict[str, Asset], request: web.Request) -> web.Response:
    """`GET …/static/{name}` for a page's fixed table of assets (404 for anything else)."""
    asset = assets.get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound()
    return web.Response(
        body=asset.path.read_bytes(),
        content_type=asset.content_type,
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )
