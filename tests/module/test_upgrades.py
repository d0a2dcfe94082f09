"""The platform's room upgrades over the mocked ModuleApi and real SQLite: `sferumctl rooms
upgrade`'s endpoint (which rooms, which versions, as the bot) and the pins the new room gets."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.module_api.errors import SynapseError

from sferum_shared import matrix
from sferum_shared.rooms import RoomKey, RoomKind
from sferum_shared.vocabulary import Key
from synapse_sferum.module import SferumModule
from synapse_sferum.upgrades import RoomUpgrades, UpgradeRefused
from tests.module.conftest import SERVER, load_demo, uid

BOT = uid("sferum")
NEWS, OLD_NEWS, NEW_NEWS, DM = "!news:s", "!news-old:s", "!news-new:s", "!dm:s"
KEY = RoomKey(RoomKind.CLASS_NEWS, "5a")
TEACHER = "t-1"


def event(sender: str, content: dict[str, Any], event_type: str = matrix.MESSAGE) -> Any:
    return SimpleNamespace(
        sender=sender, content=content, type=event_type, is_state=lambda: False
    )


SCHOOL_COPY = {
    "msgtype": "m.text",
    "body": "Директор: Собрание в пятницу",
    Key.MIRROR_OF: {"room_id": "!school-news:s", "event_id": "$school-post", "sender": "@d:s"},
}
EVENTS = {
    "$own": event(uid(TEACHER), {"msgtype": "m.text", "body": "Экскурсия", "formatted_body":
                                 "<b>Экскурсия</b>", "format": "org.matrix.custom.html",
                                 "m.relates_to": {"rel_type": "m.thread", "event_id": "$x"}}),
    "$copy": event(BOT, SCHOOL_COPY),
    "$redacted": event(uid(TEACHER), {}),
    "$poll": event(uid(TEACHER), {"question": "?"}, matrix.POLL_START),
}  # fmt: skip


class Harness:
    def __init__(self, module: SferumModule, api: mock.Mock):
        self.api, self.module = api, module
        self.state: dict[str, dict[tuple[str, str], Any]] = {
            NEWS: {(matrix.CREATE, ""): SimpleNamespace(content={})},
            DM: {(matrix.CREATE, ""): SimpleNamespace(content={})},
            OLD_NEWS: {
                (matrix.PINNED_EVENTS, ""): SimpleNamespace(
                    content={"pinned": ["$poll", "$own", "$gone", "$copy", "$redacted"]}
                )
            },
        }
        api.get_room_state.side_effect = self._state
        api.lookup_room_alias.side_effect = self._alias
        store = api._hs.get_datastores.return_value.main
        store.get_event = mock.AsyncMock(side_effect=lambda event_id, **kw: EVENTS.get(event_id))
        self.sent: list[dict[str, Any]] = []
        api.create_and_send_event_into_room = mock.AsyncMock(side_effect=self._send)
        api._hs.config.server.default_room_version = KNOWN_ROOM_VERSIONS["10"]
        self.creation = api._hs.get_room_creation_handler.return_value
        self.creation.upgrade_room = mock.AsyncMock(return_value="!upgraded:s")
        lock = api._hs.get_worker_locks_handler.return_value.acquire_read_write_lock
        lock.return_value.__aenter__ = mock.AsyncMock()
        lock.return_value.__aexit__ = mock.AsyncMock(return_value=False)
        self.upgrades = RoomUpgrades(api, module.directory, BOT, mock.Mock())

    async def _state(self, room_id: str, types: Any) -> dict[Any, Any]:
        return self.state.get(room_id, {})

    async def _alias(self, alias: str) -> tuple[str, list[str]]:
        if alias == f"#news-5a:{SERVER}":
            return NEWS, [SERVER]
        raise SynapseError(404, "Room alias not found")

    async def _send(self, event: dict[str, Any]) -> Any:
        self.sent.append(event)
        return SimpleNamespace(event_id=f"$sent{len(self.sent)}")


@pytest.fixture
async def h(module: SferumModule, api: mock.Mock) -> Harness:
    await load_demo(module.directory, TEACHER)
    await module.directory.record_room(KEY, NEWS)
    return Harness(module, api)


@pytest.mark.parametrize(
    ("room", "version", "status", "errcode"),
    [
        ("#nope:school.test", None, 404, "M_NOT_FOUND"),
        ("!nope:s", None, 404, "M_NOT_FOUND"),
        ("nonsense", None, 404, "M_NOT_FOUND"),
        (DM, None, 400, "M_INVALID_PARAM"),
        (NEWS, "99", 400, "M_UNSUPPORTED_ROOM_VERSION"),
    ],
)
async def test_what_sferumctl_may_not_upgrade(
    h: Harness, room: str, version: str | None, status: int, errcode: str
) -> None:
    with pytest.raises(UpgradeRefused) as refused:
        await h.upgrades.upgrade(room, version)
    assert (refused.value.refusal.status, refused.value.refusal.errcode) == (status, errcode)
    h.creation.upgrade_room.assert_not_awaited()


@pytest.mark.parametrize(
    ("room", "version", "upgraded_to"),
    [(f"#news-5a:{SERVER}", None, "10"), (NEWS, "11", "11")],
)
async def test_a_provisioned_room_is_upgraded_as_the_bot(
    h: Harness, room: str, version: str | None, upgraded_to: str
) -> None:
    upgraded = await h.upgrades.upgrade(room, version)
    assert upgraded.to_json() == {
        "room_id": NEWS,
        "replacement_room": "!upgraded:s",
        "version": upgraded_to,
        "kind": "news",
        "scope": "5a",
    }
    [call] = h.creation.upgrade_room.await_args_list
    assert call.args[0].user.to_string() == BOT
    assert call.args[1:3] == (NEWS, KNOWN_ROOM_VERSIONS[upgraded_to])


async def test_an_upgraded_rooms_old_one_is_not_upgraded_again(h: Harness) -> None:
    assert await h.module.directory.replace_room(KEY, NEWS, "!upgraded:s")
    with pytest.raises(UpgradeRefused, match="upgrade its replacement !upgraded:s"):
        await h.upgrades.upgrade(NEWS, None)


async def test_the_admin_endpoint_answers_with_the_refusal(h: Harness) -> None:
    h.module.admin_api._upgrades = h.upgrades
    request = mock.Mock()
    request.content.read.return_value = json.dumps({"room": DM}).encode()
    with pytest.raises(SynapseError) as refused:
        await h.module.admin_api._upgrade_room(request)
    assert (refused.value.code, refused.value.errcode) == (400, "M_INVALID_PARAM")
    request.content.read.return_value = json.dumps({"room": NEWS, "version": 11}).encode()
    with pytest.raises(SynapseError) as malformed:
        await h.module.admin_api._upgrade_room(request)
    assert malformed.value.code == 400


async def test_pinned_messages_are_copied_into_the_new_room_and_pinned_there(
    h: Harness,
) -> None:
    await h.upgrades._carry_pins(OLD_NEWS, NEW_NEWS, ["$poll", "$own", "$gone", "$copy",
                                                     "$redacted"])  # fmt: skip
    own, copy, pins = h.sent
    assert (own["room_id"], own["sender"], own["type"]) == (NEW_NEWS, BOT, matrix.MESSAGE)
    assert own["content"]["body"] == "Марина Сергеевна Иванова: Экскурсия"
    assert own["content"]["formatted_body"] == "<b>Марина Сергеевна Иванова</b>: <b>Экскурсия</b>"
    assert "m.relates_to" not in own["content"]
    assert own["content"][Key.PIN_OF] == {
        "room_id": OLD_NEWS,
        "event_id": "$own",
        "sender": uid(TEACHER),
    }
    # a school news copy keeps its author's line and its mark, and is the new room's copy
    assert copy["content"]["body"] == SCHOOL_COPY["body"]
    assert copy["content"][Key.MIRROR_OF] == SCHOOL_COPY[Key.MIRROR_OF]
    assert await h.module.directory.mirrors_of("$school-post") == {NEW_NEWS: "$sent2"}
    assert (pins["type"], pins["state_key"], pins["content"]) == (
        matrix.PINNED_EVENTS,
        "",
        {"pinned": ["$sent1", "$sent2"]},
    )


async def test_no_pins_no_pinned_events(h: Harness) -> None:
    await h.upgrades._carry_pins(OLD_NEWS, NEW_NEWS, ["$poll", "$redacted"])
    assert h.sent == []


async def test_the_platforms_tombstone_carries_the_pins_over(h: Harness) -> None:
    old_key = RoomKey(RoomKind.CLASS_NEWS, "6b")
    await h.module.directory.record_room(old_key, OLD_NEWS)
    tombstone = SimpleNamespace(
        type=matrix.TOMBSTONE,
        room_id=OLD_NEWS,
        sender=BOT,
        content={"body": "replaced", "replacement_room": NEW_NEWS},
        get_state_key=lambda: "",
    )
    await h.upgrades.on_new_event(tombstone, {})  # type: ignore[arg-type]
    assert await h.module.directory.room_id(old_key) == NEW_NEWS
    pins = [e for e in h.sent if e["type"] == matrix.PINNED_EVENTS]
    assert [(e["room_id"], e["content"]) for e in pins] == [
        (NEW_NEWS, {"pinned": ["$sent1", "$sent2"]})
    ]
