"""The call widget: the SFU's call page shown in a room (docs/calls.md).

Pure: the module places the widget in the rooms it provisions, and the SFU serves the page its
URL opens (`sfu/page.py`, `GET /call`), so the URL is spelled once, here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from sferum_shared.rooms import RoomKind
from sferum_shared.vocabulary import WidgetId
from synapse_sferum.policy.room_kinds import ROOM_KINDS

#: Room kind → the widget's name, for the kinds that show the call page.
WIDGET_NAMES: Mapping[RoomKind, str] = {
    kind: spec.call_widget.title
    for kind, spec in ROOM_KINDS.items()
    if spec.call_widget is not None
}


def widget_state(kind: RoomKind, room_id: str, public_url: str) -> dict[str, Any]:
    """The content of the `im.vector.modular.widgets` event (state key `WidgetId.CALL`).

    `room_id` is the room whose call the widget joins. For a lesson or the broadcast room that
    is the room holding the widget, so the URL leaves it to the client (`$matrix_room_id`) and
    the same content fits a recreated room; a class news room names the school's broadcast
    room explicitly, as that is the call its families watch. The user and device come from
    the client's template variables too: `/get_token` needs them as the claimed member, and
    the SFU checks the user against the OpenID token anyway. `public_url` is where browsers
    reach the SFU.
    """
    if kind not in WIDGET_NAMES:
        kinds = ", ".join(k.value for k in WIDGET_NAMES)
        raise ValueError(f"kind must be one of {kinds}, got {kind.value!r}")
    if not room_id.startswith("!"):
        raise ValueError(f"room_id must be a Matrix room ID (!…), got {room_id!r}")
    if not public_url.startswith(("http://", "https://")):
        raise ValueError(f"public_url must be an http(s) URL, got {public_url!r}")
    room = quote(room_id, safe="") if kind is RoomKind.CLASS_NEWS else "$matrix_room_id"
    url = (
        f"{public_url.rstrip('/')}/call?room={room}&kind={kind.value}"
        "&user=$matrix_user_id&device=$org.matrix.msc3819.matrix_device_id"
        "&theme=$org.matrix.msc2873.client_theme"
    )
    return {
        "id": WidgetId.CALL,
        "type": "m.custom",
        "name": WIDGET_NAMES[kind],
        "url": url,
        "data": {"title": WIDGET_NAMES[kind]},
        "waitForIframeLoad": True,
    }
