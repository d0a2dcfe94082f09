"""Reports of messages: which school hears of one, whether its staff read the text, the notice."""

from __future__ import annotations

import pytest

from sferum_shared.ids import PersonId
from sferum_shared.model import Member, Role
from sferum_shared.rooms import RoomKind
from sferum_shared.vocabulary import Key
from synapse_sferum.policy.reports import (
    EventReport,
    ReportFacts,
    event_link,
    notice_content,
    person_label,
    reported_text,
    staff_may_read,
    users_room_schools,
)

STAFF_READ = [
    (RoomKind.CLASS_CHAT, False, True),
    (RoomKind.CLASS_NEWS, False, True),
    (RoomKind.LESSON, False, True),
    (RoomKind.MEETING, False, True),
    (RoomKind.STAFF, False, True),
    (RoomKind.SCHOOL_NEWS, False, True),
    (RoomKind.BROADCAST, False, True),
    (RoomKind.SCHOOL_SPACE, False, True),
    (RoomKind.CLASS_SPACE, False, True),
    (RoomKind.PARENTS, False, False),  # guardians only
    (RoomKind.DIARY, False, False),  # a pupil and their guardians
    (RoomKind.DOCUMENTS, False, False),  # one person
    (None, False, False),  # a direct chat or a group people made
    (RoomKind.CLASS_CHAT, True, False),  # a partner school's teacher reads the staff room
]


@pytest.mark.parametrize(("kind", "outsiders", "expected"), STAFF_READ)
def test_staff_read_the_text_only_of_rooms_they_are_in(
    kind: RoomKind | None, outsiders: bool, expected: bool
) -> None:
    assert staff_may_read(kind, outsiders) is expected


def test_every_kind_has_a_row() -> None:
    assert {row[0] for row in STAFF_READ} >= set(RoomKind)


def member(*orgs: str, role: Role = Role.GUARDIAN, name: str = "Анна Петрова") -> Member:
    return Member(PersonId("p"), frozenset({role}), frozenset(orgs), real_name=name)


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ([member("s1"), member("s1", role=Role.TEACHER)], {"s1"}),
        ([member("s1", "s2"), member("s2")], {"s2"}),
        ([member("s1"), member("s2")], set()),  # no school in common: nobody's to tell
        ([], set()),  # nobody of the directory
    ],
)
def test_a_users_room_belongs_to_the_schools_all_its_members_share(
    members: list[Member], expected: set[str]
) -> None:
    assert users_room_schools(members) == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"msgtype": "m.text", "body": "плохое слово"}, "плохое слово"),
        ({}, None),  # redacted
        ({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "…"}, None),
        ({"body": "   "}, None),
        ({"body": 5}, None),
    ],
)
def test_reported_text(content: dict[str, object], expected: str | None) -> None:
    assert reported_text(content) == expected


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (member("s1", role=Role.STUDENT, name="Артём Волков"), "Артём Волков (ученик)"),
        (
            Member(PersonId("t"), frozenset({Role.STAFF, Role.TEACHER}), frozenset(), "И. И."),
            "И. И. (учитель, сотрудник школы)",
        ),
        (None, "@x:s"),
    ],
)
def test_person_label(who: Member | None, expected: str) -> None:
    assert person_label("@x:s", who) == expected


REPORT = EventReport(7, "!class:s", "$ev", "@pupil:s", reason="обзывается", score=-100)


def facts(**changes: object) -> ReportFacts:
    base: dict[str, object] = {
        "report": REPORT,
        "reporter": "Артём Волков (ученик)",
        "sender": "Борис Котов (ученик)",
        "sender_id": "@boris:s",
        "room_title": "5А — чат класса",
        "text_allowed": True,
        "text": "ты <дурак>",
    }
    return ReportFacts(**{**base, **changes})  # type: ignore[arg-type]


def test_notice_says_who_where_why_and_links_the_message() -> None:
    content = notice_content(facts())
    body = content["body"]
    assert content["msgtype"] == "m.notice"
    assert body.startswith("Жалоба на сообщение\n")
    for part in (
        "Пожаловался: Артём Волков (ученик)",
        "Автор сообщения: Борис Котов (ученик)",
        "Комната: 5А — чат класса",
        "Причина: обзывается",
        "Оценка: -100",
        "Сообщение: ты <дурак>",
        "https://matrix.to/#/!class:s/$ev",
    ):
        assert part in body
    assert "ты &lt;дурак&gt;" in content["formatted_body"]
    assert content[Key.REPORT] == {
        "report_id": 7,
        "room_id": "!class:s",
        "event_id": "$ev",
        "reporter": "@pupil:s",
        "sender": "@boris:s",
    }


def test_notice_without_the_text_where_the_staff_do_not_read() -> None:
    content = notice_content(facts(text_allowed=False))
    assert "дурак" not in content["body"] and "дурак" not in content["formatted_body"]
    assert "Текст сообщения не показан" in content["body"]


def test_notice_of_a_bare_report() -> None:
    bare = EventReport(8, "!dm:s", "$gone", "@g:s")
    body = notice_content(facts(report=bare, sender=None, sender_id=None, text=None))["body"]
    assert "Причина: не указана" in body and "Оценка" not in body
    assert "Автор сообщения: неизвестен" in body and "Текста нет" in body


def test_long_text_is_cut() -> None:
    body = notice_content(facts(text="а" * 5000))["body"]
    assert "а" * 1000 + "…" in body and "а" * 1001 not in body


def test_link_escapes_what_a_url_cannot_hold() -> None:
    assert event_link("!a b:s", "$e/f") == "https://matrix.to/#/!a%20b:s/$e%2Ff"
