"""The call widget's content (docs/rooms-and-rules.md, docs/calls.md); which rooms carry it:
test_provisioning_plan."""

from __future__ import annotations

import re

import pytest

from sferum_shared.rooms import RoomKind
from sferum_shared.vocabulary import WidgetId
from synapse_sferum.policy.call_widget import widget_state

K = RoomKind
SFU = "https://sfu.school.test"
BROADCAST_ID = "!bcast:school.test"
CALL_QUERY = (
    "&user=$matrix_user_id&device=$org.matrix.msc3819.matrix_device_id"
    "&theme=$org.matrix.msc2873.client_theme"
)

# (kind, the call's room ID, public URL, the widget's name, its URL)
CONTENT_TABLE = [
    (
        K.LESSON,
        "!l:school.test",
        f"{SFU}/",
        "Урок",
        f"{SFU}/call?room=$matrix_room_id&kind=lesson{CALL_QUERY}",
    ),
    (
        K.BROADCAST,
        BROADCAST_ID,
        SFU,
        "Трансляция",
        f"{SFU}/call?room=$matrix_room_id&kind=broadcast{CALL_QUERY}",
    ),
    # families watch the school's broadcast from their class news room: the URL names it
    (
        K.CLASS_NEWS,
        BROADCAST_ID,
        "http://127.0.0.1:8010",
        "Трансляция",
        f"http://127.0.0.1:8010/call?room=%21bcast%3Aschool.test&kind=news{CALL_QUERY}",
    ),
]


@pytest.mark.parametrize(
    ("kind", "room_id", "public_url", "name", "url"),
    [pytest.param(*row, id=row[0].value) for row in CONTENT_TABLE],
)
def test_widget_content(
    kind: RoomKind, room_id: str, public_url: str, name: str, url: str
) -> None:
    assert widget_state(kind, room_id, public_url) == {
        "id": WidgetId.CALL,
        "type": "m.custom",
        "name": name,
        "url": url,
        "data": {"title": name},
        "waitForIframeLoad": True,
    }
    assert WidgetId.CALL == "ru.sferum.call"


@pytest.mark.parametrize(
    ("kind", "room_id", "url", "fragment"),
    [
        pytest.param(K.CLASS_CHAT, "!r:s", SFU, "kind must be one of", id="no-calls-in-chats"),
        pytest.param(K.LESSON, "#alias:s", SFU, "room_id must be", id="alias-not-room-id"),
        pytest.param(K.LESSON, "!r:s", "javascript:alert(1)", "http(s) URL", id="script-url"),
    ],
)
def test_widget_content_refuses_bad_input(
    kind: RoomKind, room_id: str, url: str, fragment: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        widget_state(kind, room_id, url)
