"""Reports of messages reach the school's staff room: once, in order, past a bad one."""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

from sferum_shared.rooms import RoomKey, RoomKind
from sferum_shared.vocabulary import EventType, Key
from synapse_sferum.config import ReportsConfig
from synapse_sferum.module import SferumModule
from synapse_sferum.reports import MAX_ATTEMPTS, SETTLE_MS, ReportRelay
from tests.module.conftest import NOW_MS, load_demo, uid

BOT = uid("sferum")
CLASS, STAFF, DM = "!class:school.test", "!staff:school.test", "!dm:school.test"
PUPIL, CLASSMATE, GUARDIAN, TEACHER = "p-5a-1", "p-5a-2", "g-volkova", "t-1"


def state_event(content: dict[str, Any], membership: str | None = None) -> Any:
    return SimpleNamespace(content=content, membership=membership)


def members(*user_ids: str) -> dict[Any, Any]:
    return {("m.room.member", u): state_event({}, "join") for u in user_ids}


ROOM_STATE = {
    CLASS: {
        ("m.room.name", ""): state_event({"name": "5А — чат класса"}),
        (EventType.ROOM_KIND, ""): state_event({"kind": "class", "org": "school-1"}),
        **members(uid(PUPIL), uid(CLASSMATE), uid(TEACHER)),
    },
    STAFF: members(uid(TEACHER), BOT),
    DM: {
        ("m.room.create", ""): state_event({Key.DIRECT: True}),
        **members(uid(GUARDIAN), uid(TEACHER)),
    },
    "!elsewhere:school.test": members("@stranger:school.test"),
}
MESSAGES = {
    "$insult": SimpleNamespace(sender=uid(CLASSMATE), content={"body": "ты дурак"}),
    "$private": SimpleNamespace(sender=uid(TEACHER), content={"body": "оценки сына"}),
}


class Harness:
    def __init__(self, module: SferumModule, api: mock.Mock, database: sqlite3.Connection):
        self.api, self.database, self.module = api, database, module
        self.next_id = 1
        api.get_room_state.side_effect = self._state
        api._hs.get_datastores.return_value.main.get_event = mock.AsyncMock(
            side_effect=lambda event_id, **kw: MESSAGES.get(event_id)
        )
        api.create_and_send_event_into_room = mock.AsyncMock()

    async def _state(self, room_id: str, types: Any) -> dict[Any, Any]:
        return ROOM_STATE[room_id]

    def relay(self) -> ReportRelay:
        """A relay as a (re)started server makes it."""
        return ReportRelay(self.api, self.module.directory, BOT, ReportsConfig())

    def report(self, room_id: str, event_id: str, person: str, reason: str | None = None) -> int:
        report_id, self.next_id = self.next_id, self.next_id + 1
        self.database.execute(
            "INSERT INTO event_reports VALUES (?, ?, ?, ?, ?, ?, ?)",
            (report_id, NOW_MS - SETTLE_MS - 1, room_id, event_id, uid(person), reason,
             json.dumps({"reason": reason})),
        )  # fmt: skip
        return report_id

    def notices(self) -> list[dict[str, Any]]:
        return [c.args[0] for c in self.api.create_and_send_event_into_room.await_args_list]


@pytest.fixture
async def h(module: SferumModule, api: mock.Mock, database: sqlite3.Connection) -> Harness:
    await load_demo(module.directory, PUPIL, CLASSMATE, GUARDIAN, TEACHER)
    await module.directory.record_room(RoomKey(RoomKind.CLASS_CHAT, "5a"), CLASS)
    await module.directory.record_room(RoomKey(RoomKind.STAFF, "school-1"), STAFF)
    return Harness(module, api, database)


async def test_reports_before_the_first_pass_are_left_to_the_admin_api(h: Harness) -> None:
    h.report(CLASS, "$insult", PUPIL)
    relay = h.relay()
    await relay.check()
    h.report(CLASS, "$insult", PUPIL, "обзывается")
    await relay.check()
    assert len(h.notices()) == 1 and "обзывается" in h.notices()[0]["content"]["body"]


async def test_each_report_reaches_the_staff_room_once_across_restarts(h: Harness) -> None:
    await h.relay().check()  # the first pass: nothing yet
    first = h.report(CLASS, "$insult", PUPIL, "обзывается")
    second = h.report(DM, "$private", GUARDIAN, "грубость")
    h.report("!elsewhere:school.test", "$x", PUPIL)  # no school's room: logged, skipped
    await h.relay().check()
    await h.relay().check()
    sent = h.notices()
    assert [n["room_id"] for n in sent] == [STAFF, STAFF]
    assert all(n["sender"] == BOT for n in sent)
    assert [n["content"][Key.REPORT]["report_id"] for n in sent] == [first, second]
    class_notice, dm_notice = (n["content"]["body"] for n in sent)
    assert "Сообщение: ты дурак" in class_notice and "Пожаловался: Артём" in class_notice
    assert "оценки сына" not in dm_notice and "Комната: личный чат" in dm_notice


async def test_a_failing_report_is_retried_then_left_behind(h: Harness) -> None:
    relay = h.relay()
    await relay.check()
    h.report(CLASS, "$insult", PUPIL, "первая")
    h.report(CLASS, "$insult", PUPIL, "вторая")
    send = h.api.create_and_send_event_into_room
    send.side_effect = RuntimeError("down")
    for _ in range(MAX_ATTEMPTS - 1):
        await relay.check()
        assert send.await_count == 1  # the later report waits behind the failing one
        send.reset_mock()
    send.side_effect = [RuntimeError("still down"), None]
    await relay.check()
    bodies = [c.args[0]["content"]["body"] for c in send.await_args_list]
    assert len(bodies) == 2 and "вторая" in bodies[1]


async def test_the_text_stays_out_while_a_partner_school_reads_the_staff_room(h: Harness) -> None:
    await h.relay().check()
    h.report(CLASS, "$insult", PUPIL)
    with mock.patch.dict(ROOM_STATE, {STAFF: members(uid(TEACHER), "@t:partner.test")}):
        await h.relay().check()
    assert "ты дурак" not in h.notices()[0]["content"]["body"]
