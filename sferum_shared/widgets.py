"""The widget side of the Matrix widget API: one script for every page that is a room widget.

The diary mini-app, the call page and the staff room's invite page are widgets that ask the
client for an OpenID token and have their own server check it. The script that speaks the
widget API (`static/widget-api.js`) lives here once; each page's server (the bridge, the SFU,
the Synapse module) serves it from its own origin, as their CSPs allow only 'self'.
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable

import attrs

WIDGET_API_SCRIPT = "widget-api.js"
_CONTENT_TYPES = {".js": "application/javascript", ".css": "text/css"}
#: What every static file of a page is sent with.
ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


@attrs.frozen
class Asset:
    path: Traversable
    content_type: str


def page_assets(folder: Traversable, *names: str) -> dict[str, Asset]:
    """A page's static files by name: its own (in `folder`) and the widget API script.

    A fixed table: no path from a request ever reaches the disk.
    """
    files = {name: folder / name for name in names}
    files[WIDGET_API_SCRIPT] = resources.files(__package__) / "static" / WIDGET_API_SCRIPT
    return {name: Asset(path, _CONTENT_TYPES[_suffix(path.name)]) for name, path in files.items()}


def _suffix(name: str) -> str:
    return name[name.rfind(".") :]
