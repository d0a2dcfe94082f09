"""What the platform carries over when it upgrades one of its rooms (policy.upgrades)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from sferum_shared.rooms import RoomKey, RoomKind
from synapse_sferum.policy.upgrades import (
    carried_state,
    pinned_copy,
    replacement_room,
    stale_space_links,
    upgrade_refusal,
)

BOT = "@sferum:school.test"
TOMBSTONE = "m.room.tombstone"
NEW = {"body": "upgraded", "replacement_room": "!new:school.test"}


@pytest.mark.parametrize(
    ("event_type", "state_key", "sender", "content", "expected"),
    [
        (TOMBSTONE, "", BOT, NEW, "!new:school.test"),
        (TOMBSTONE, "", "@teacher:school.test", NEW, None),  # refused anyway; never followed
        (TOMBSTONE, "x", BOT, NEW, None),
        (TOMBSTONE, None, BOT, NEW, None),
        ("m.room.name", "", BOT, NEW, None),
        (TOMBSTONE, "", BOT, {"replacement_room": ["!new:school.test"]}, None),
        (TOMBSTONE, "", BOT, {"replacement_room": ""}, None),
        (TOMBSTONE, "", BOT, {}, None),
    ],
)
def test_only_the_platforms_tombstone_names_a_replacement(
    event_type: str, state_key: str | None, sender: str, content: dict[str, Any], expected: Any
) -> None:
    assert replacement_room(event_type, state_key, sender, content, BOT) == expected


def test_widgets_layout_and_packs_are_carried_and_nothing_else() -> None:
    state: dict[tuple[str, str], dict[str, Any]] = {
        ("im.vector.modular.widgets", "ru.sferum.diary"): {"url": "https://d"},
        ("im.vector.modular.widgets", "gone"): {},
        ("io.element.widgets.layout", ""): {"widgets": {}},
        ("m.room.image_pack", "ru.sferum.school"): {"images": {}},
        ("im.ponies.room_emotes", "ru.sferum.school"): {"images": {}},
        ("m.room.name", ""): {"name": "5А — урок"},
        ("ru.sferum.room", ""): {"kind": "lesson"},
        ("m.space.parent", "!space:s"): {"via": ["s"]},
    }
    assert carried_state(state) == {
        ("im.vector.modular.widgets", "ru.sferum.diary"): {"url": "https://d"},
        ("io.element.widgets.layout", ""): {"widgets": {}},
        ("m.room.image_pack", "ru.sferum.school"): {"images": {}},
        ("im.ponies.room_emotes", "ru.sferum.school"): {"images": {}},
    }


def test_links_naming_the_old_room_are_emptied_elsewhere() -> None:
    state: dict[tuple[str, str], dict[str, Any]] = {
        ("m.space.parent", "!space:s"): {"via": ["s"], "canonical": True},
        ("m.space.parent", "!was:s"): {},  # removed already
        ("m.space.child", "!lesson:s"): {"via": ["s"]},
    }
    assert stale_space_links("!old:s", state) == [
        ("!lesson:s", "m.space.parent", "!old:s"),
        ("!space:s", "m.space.child", "!old:s"),
    ]


NEWS = RoomKey(RoomKind.CLASS_NEWS, "5a")
VERSIONS = ("10", frozenset({"1", "2", "9", "10", "11", "org.matrix.msc1767.10"}))


@pytest.mark.parametrize(
    ("room_id", "key", "on_record", "version", "expected"),
    [
        pytest.param("!news:s", NEWS, "!news:s", "11", None, id="a provisioned room"),
        pytest.param("!news:s", NEWS, "!news:s", "10", None, id="to the default"),
        pytest.param(
            None, None, None, "11",
            (404, "M_NOT_FOUND", "there is no room ROOM on this server"),
            id="no such room",
        ),
        pytest.param(
            "!dm:s", None, None, "11",
            (400, "M_INVALID_PARAM", "ROOM is not a room the platform made; only provisioned "
             "rooms are upgraded here"),
            id="a room people made",
        ),
        pytest.param(
            "!old:s", NEWS, "!news:s", "11",
            (400, "M_INVALID_PARAM", "ROOM was upgraded already; upgrade its replacement "
             "!news:s instead"),
            id="an upgraded room's old one",
        ),
        pytest.param(
            "!news:s", NEWS, "!news:s", "99",
            (400, "M_UNSUPPORTED_ROOM_VERSION", "room version '99' is not one this server "
             "knows: 1, 2, 9, 10, 11, org.matrix.msc1767.10 (its default is 10)"),
            id="a version the server does not know",
        ),
    ],
)  # fmt: skip
def test_which_rooms_sferumctl_upgrades(
    room_id: str | None,
    key: RoomKey | None,
    on_record: str | None,
    version: str,
    expected: tuple[int, str, str] | None,
) -> None:
    refusal = upgrade_refusal("ROOM", room_id, key, on_record, version, VERSIONS)
    assert (None if refusal is None else attrs.astuple(refusal)) == expected


ORIGIN = {"room_id": "!old:s", "event_id": "$e", "sender": "@t:s"}


@pytest.mark.parametrize(
    ("event_type", "content", "expected"),
    [
        pytest.param(
            "m.room.message", {"msgtype": "m.text", "body": "Экскурсия"},
            {"msgtype": "m.text", "body": "Анна Петрова: Экскурсия"},
            id="a message gets its author's line",
        ),
        pytest.param(
            "m.room.message",
            {"msgtype": "m.text", "body": "План", "format": "org.matrix.custom.html",
             "formatted_body": "<h1>План</h1>",
             "m.relates_to": {"m.in_reply_to": {"event_id": "$q"}}},
            {"msgtype": "m.text", "body": "Анна Петрова: План",
             "format": "org.matrix.custom.html",
             "formatted_body": "<p><b>Анна Петрова</b></p><h1>План</h1>"},
            id="an article keeps its HTML, not its relations",
        ),
        pytest.param(
            "m.room.message", {"msgtype": "m.image", "body": "photo.png", "url": "mxc://s/m"},
            {"msgtype": "m.image", "body": "Анна Петрова: photo.png", "url": "mxc://s/m",
             "filename": "photo.png"},
            id="an image keeps its file's name",
        ),
        pytest.param(
            "m.room.message",
            {"msgtype": "m.text", "body": "Директор: Собрание", "ru.sferum.mirror_of": {}},
            {"msgtype": "m.text", "body": "Директор: Собрание", "ru.sferum.mirror_of": {}},
            id="a school news copy has its author's line already",
        ),
        pytest.param("m.room.message", {}, None, id="redacted"),
        pytest.param("org.matrix.msc3381.poll.start", {"body": "?"}, None, id="a poll"),
        pytest.param("m.sticker", {"body": "sticker", "url": "mxc://s/m"}, None, id="a sticker"),
    ],
)  # fmt: skip
def test_which_pins_are_copied_into_the_new_room_and_how(
    event_type: str, content: dict[str, Any], expected: dict[str, Any] | None
) -> None:
    copy = pinned_copy(event_type, content, "Анна Петрова", ORIGIN)
    assert copy == (None if expected is None else {**expected, "ru.sferum.pin_of": ORIGIN})
