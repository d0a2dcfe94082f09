"""The call grants table (sfu.grants): who publishes what in lessons, broadcasts, parents'
meetings and direct chats."""

from __future__ import annotations

from typing import Any

import pytest

from sferum_shared.model import Role
from sferum_shared.rooms import RoomKind
from sfu.grants import (
    CAMERA,
    MICROPHONE,
    SCREEN_SHARE,
    Facts,
    Grant,
    Refusal,
    decide,
    facts_from_json,
)

LESSON, BROADCAST, MEETING = RoomKind.LESSON, RoomKind.BROADCAST, RoomKind.MEETING
TEACHER, PUPIL, STAFF, GUARDIAN = Role.TEACHER, Role.STUDENT, Role.STAFF, Role.GUARDIAN
ALL = Grant.publisher(CAMERA, MICROPHONE, SCREEN_SHARE, room_admin=True)
VIEWER = Grant.viewer()
AUDIENCE = Grant.viewer(hidden=True)  # a broadcast's: nobody is told of them
SPEAKS = Grant.publisher(CAMERA, MICROPHONE)
CALLS = Grant.publisher(CAMERA, MICROPHONE, SCREEN_SHARE)


def facts(kind: RoomKind | None, membership: str | None, *roles: Role, **kw: Any) -> Facts:
    return Facts(kind, membership, linked=True, roles=frozenset(roles), **kw)


CASES: list[tuple[str, Facts, Grant | Refusal]] = [
    # lessons
    ("teacher of the class", facts(LESSON, "join", TEACHER, teaches_room_class=True), ALL),
    (
        "pupil: microphone only",
        facts(LESSON, "join", PUPIL, attends_room_class=True),
        Grant.publisher(MICROPHONE),
    ),
    (
        "pupil: camera when the teacher allows",
        facts(LESSON, "join", PUPIL, attends_room_class=True, pupil_camera_allowed=True),
        Grant.publisher(CAMERA, MICROPHONE),
    ),
    (
        "pupil not joined",
        facts(LESSON, "leave", PUPIL, attends_room_class=True),
        Refusal.NOT_JOINED,
    ),
    ("pupil invited only", facts(LESSON, "invite", PUPIL), Refusal.NOT_JOINED),
    ("pupil of another class", facts(LESSON, None, PUPIL), Refusal.NOT_JOINED),
    (
        "teacher not joined",
        facts(LESSON, None, TEACHER, teaches_room_class=True),
        Refusal.NOT_JOINED,
    ),
    ("banned", facts(LESSON, "ban", PUPIL, attends_room_class=True), Refusal.BANNED),
    ("joined adult outside the class watches", facts(LESSON, "join", STAFF), VIEWER),
    # broadcasts
    ("staff publish", facts(BROADCAST, "join", STAFF, in_school=True), ALL),
    ("staff not joined watch", facts(BROADCAST, None, STAFF, in_school=True), AUDIENCE),
    ("teacher watches", facts(BROADCAST, "join", TEACHER, in_school=True), AUDIENCE),
    ("pupil watches, never publishes", facts(BROADCAST, None, PUPIL, in_school=True), AUDIENCE),
    ("parent watches without joining", facts(BROADCAST, None, GUARDIAN, in_school=True), AUDIENCE),
    ("other school", facts(BROADCAST, None, STAFF, in_school=False), Refusal.NOT_IN_SCHOOL),
    ("banned from broadcast", facts(BROADCAST, "ban", PUPIL, in_school=True), Refusal.BANNED),
    # parents' meetings
    ("class teacher leads", facts(MEETING, "join", TEACHER, teaches_room_class=True), ALL),
    ("guardian of the class", facts(MEETING, "join", GUARDIAN, guards_room_class=True), SPEAKS),
    ("school staff", facts(MEETING, "join", STAFF), CALLS),
    ("joined, not of the class: watches", facts(MEETING, "join", GUARDIAN), VIEWER),
    (
        "guardian of another class (not a member)",
        facts(MEETING, None, GUARDIAN),
        Refusal.NOT_JOINED,
    ),
    (
        "guardian who left",
        facts(MEETING, "leave", GUARDIAN, guards_room_class=True),
        Refusal.NOT_JOINED,
    ),
    ("banned from the meeting", facts(MEETING, "ban", GUARDIAN), Refusal.BANNED),
    # direct chats (rooms the platform did not make)
    ("direct chat of two", facts(None, "join", GUARDIAN, direct_chat=True), CALLS),
    (
        "direct chat, invited only",
        facts(None, "invite", GUARDIAN, direct_chat=True),
        Refusal.NO_CALLS_HERE,
    ),
    ("a group of three", facts(None, "join", GUARDIAN, direct_chat=False), Refusal.NO_CALLS_HERE),
    ("banned from the chat", facts(None, "ban", TEACHER, direct_chat=True), Refusal.BANNED),
    (
        "a provisioned room is no direct chat",
        facts(RoomKind.CLASS_CHAT, "join", PUPIL, direct_chat=True),
        Refusal.NO_CALLS_HERE,
    ),
    # other rooms and people
    ("class chat", facts(RoomKind.CLASS_CHAT, "join", TEACHER), Refusal.NO_CALLS_HERE),
    ("parents' chat", facts(RoomKind.PARENTS, "join", GUARDIAN), Refusal.NO_CALLS_HERE),
    ("unknown room", facts(None, "join", TEACHER), Refusal.NO_CALLS_HERE),
    (
        "unlinked account",
        Facts(LESSON, "join", linked=False, teaches_room_class=True),
        Refusal.NOT_IN_DIRECTORY,
    ),
]


@pytest.mark.parametrize(("name", "given", "expected"), CASES, ids=[c[0] for c in CASES])
def test_grants_table(name: str, given: Facts, expected: Grant | Refusal) -> None:
    assert decide(given) == expected


def test_every_grant_subscribes_and_only_a_broadcast_audience_is_hidden() -> None:
    for _, given, _ in CASES:
        outcome = decide(given)
        if isinstance(outcome, Grant):
            assert outcome.can_subscribe
            assert outcome.hidden == (given.room_kind is BROADCAST and not outcome.can_publish)
            assert outcome.can_publish == bool(outcome.can_publish_sources)


def test_refusals_are_namespaced_with_messages() -> None:
    for refusal in Refusal:
        assert refusal.value.startswith("ru.sferum.")
        assert refusal.message


def rtc_facts(**over: Any) -> dict[str, Any]:
    member = {
        "user_id": "@t:s",
        "person": "t-1",
        "roles": ["teacher"],
        "org_ids": ["school-1"],
        "student_class_ids": [],
        "teacher_class_ids": ["5a"],
        "child_ids": [],
        "child_class_ids": [],
        "guardian_ids": [],
    }
    raw = {"room_kind": "lesson", "room_scope": "5a", "membership": "join", "member": member}
    return {**raw, **over}


def test_facts_from_the_module_answer() -> None:
    got = facts_from_json(rtc_facts())
    assert got == Facts(
        LESSON, "join", linked=True, roles=frozenset({TEACHER}), teaches_room_class=True
    )
    assert decide(got) == ALL


def test_facts_of_a_broadcast_viewer() -> None:
    parent = {**rtc_facts()["member"], "roles": ["guardian"], "teacher_class_ids": []}
    got = facts_from_json(
        rtc_facts(room_kind="broadcast", room_scope="school-1", membership=None, member=parent)
    )
    assert got.in_school and got.membership is None
    assert decide(got) == AUDIENCE


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "lesson",
        rtc_facts(member=None),
        rtc_facts(member="t-1"),
        rtc_facts(room_scope=None),
    ],
)
def test_malformed_answers_refuse(raw: Any) -> None:
    assert decide(facts_from_json(raw)) in (Refusal.NOT_IN_DIRECTORY, Refusal.NO_CALLS_HERE)


def test_facts_of_a_meeting_and_a_direct_chat() -> None:
    parent = {**rtc_facts()["member"], "roles": ["guardian"], "teacher_class_ids": []}
    meeting = facts_from_json(
        rtc_facts(room_kind="meeting", member={**parent, "child_class_ids": ["5a"]})
    )
    assert meeting.guards_room_class and not meeting.teaches_room_class
    assert decide(meeting) == SPEAKS
    direct = facts_from_json(
        rtc_facts(room_kind=None, room_scope=None, direct_chat=True, member=parent)
    )
    assert direct.direct_chat and decide(direct) == CALLS
    # Only a literal true counts: a module that answers nonsense opens no call.
    for nonsense in ("true", 1, None):
        odd = facts_from_json(
            rtc_facts(room_kind=None, room_scope=None, direct_chat=nonsense, member=parent)
        )
        assert decide(odd) is Refusal.NO_CALLS_HERE


def test_unknown_room_kind_and_roles_are_ignored() -> None:
    got = facts_from_json(rtc_facts(room_kind="party", member={"roles": ["wizard"]}))
    assert got.room_kind is None and got.roles == frozenset()
    assert decide(got) is Refusal.NO_CALLS_HERE
