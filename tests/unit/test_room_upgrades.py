"""What the platform carries over when it upgrades one of its rooms (policy.upgrades)."""

from __future__ import annotations

from typing import Any

import pytest

from synapse_sferum.policy.upgrades import carried_state, replacement_room, stale_space_links

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
