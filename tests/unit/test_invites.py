"""The teacher's invite links (synapse_sferum/policy/invites.py): command, who may, reply."""

from __future__ import annotations

from datetime import date

import pytest

from sferum_shared.model import Member, Role
from synapse_sferum.policy.invites import (
    ClassFacts,
    CodesCommand,
    Invitation,
    codes_refusal,
    codes_reply,
    find_class,
    join_link,
    parse_codes_command,
)

FIVE_A = ClassFacts("5a", "5А", "school-1", frozenset({"t-1"}))
SIX_B = ClassFacts("6b", "6Б", "school-1", frozenset({"t-2"}))
OTHER_SCHOOL = ClassFacts("5a-x", "5А", "school-2", frozenset({"t-9"}))
CLASSES = [FIVE_A, SIX_B, OTHER_SCHOOL]
SCHOOL = frozenset({"school-1"})


def member(person: str, *roles: Role, orgs: frozenset[str] = SCHOOL) -> Member:
    return Member(person, frozenset(roles), orgs)


@pytest.mark.parametrize(
    ("body", "command"),
    [
        ("коды 5А", CodesCommand("5А")),
        ("  Коды   5 а ", CodesCommand("5 а")),
        ("!коды 6Б", CodesCommand("6Б")),
        ("codes 5A", CodesCommand("5A")),
        ("коды", CodesCommand("")),
        ("коды для 5А пожалуйста", CodesCommand("для 5А пожалуйста")),  # no such class, said so
        ("дайте коды 5А", None),
        ("кодыы 5А", None),
        ("", None),
        ("!часы пн-пт 08:00-17:00", None),
    ],
)
def test_the_command(body: str, command: CodesCommand | None) -> None:
    assert parse_codes_command(body) == command


@pytest.mark.parametrize(
    ("typed", "found"),
    [("5А", FIVE_A), ("5а", FIVE_A), ("5 А", FIVE_A), ("6б", SIX_B), ("5A", None), ("7В", None)],
)
def test_the_class_is_found_by_its_title_in_the_persons_school(
    typed: str, found: ClassFacts | None
) -> None:
    assert find_class(typed, CLASSES, SCHOOL) == found
    assert find_class("5А", CLASSES, frozenset({"school-2"})) == OTHER_SCHOOL


CASES = [
    ("the class teacher", member("t-1", Role.TEACHER), FIVE_A, None),
    ("another class's teacher", member("t-2", Role.TEACHER), FIVE_A, "классный руководитель"),
    ("staff of the school", member("s-1", Role.STAFF), SIX_B, None),
    (
        "staff of another school",
        member("s-9", Role.STAFF, orgs=frozenset({"school-2"})),
        FIVE_A,
        "классный руководитель",
    ),
    ("a pupil", member("p-1", Role.STUDENT), FIVE_A, "только классные руководители"),
    ("a guardian", member("g-1", Role.GUARDIAN), FIVE_A, "только классные руководители"),
    ("no linked person", None, FIVE_A, "только сотрудникам школы"),
    ("an unknown class", member("t-1", Role.TEACHER), None, "нет в вашей школе"),
]


@pytest.mark.parametrize(("case", "who", "found", "refused"), CASES, ids=[c[0] for c in CASES])
def test_who_gets_codes(
    case: str, who: Member | None, found: ClassFacts | None, refused: str | None
) -> None:
    refusal = codes_refusal(who, found, "5Я")
    if refused is None:
        assert refusal is None
    else:
        assert refusal is not None and refused in refusal


def test_the_reply_lists_a_link_per_person_and_who_got_none() -> None:
    link = join_link("https://school.example/", "K7QM-4TXP-9RWA")
    assert link == "https://school.example/join#K7QM-4TXP-9RWA"
    text = codes_reply(
        "5А", [Invitation("Анна Волкова", link)], ["Иван Петров"], date(2026, 12, 21)
    )
    assert text.startswith("Ссылки-приглашения для 5А (действуют до 21.12.2026).")
    assert f"Анна Волкова: {link}" in text
    assert text.endswith("нельзя выдать): Иван Петров.")
    none = codes_reply("5А", [], [], date(2026, 12, 21))
    assert "новых кодов нет" in none
