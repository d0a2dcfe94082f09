"""Who may contact whom (docs/rooms-and-rules.md), as a table over a small school, both ways, plus
properties."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sferum_shared.model import Member, Role
from synapse_sferum.policy import ALLOW, Reason, may_contact, refuse

SCHOOL = frozenset({"school-1"})


def _person(
    person_id: str,
    *roles: Role,
    minor: bool = False,
    learns: frozenset[str] = frozenset(),
    teaches: frozenset[str] = frozenset(),
    children: frozenset[str] = frozenset(),
    children_learn: frozenset[str] = frozenset(),
    guardians: frozenset[str] = frozenset(),
    orgs: frozenset[str] = SCHOOL,
) -> Member:
    return Member(
        person_id=person_id,
        roles=frozenset(roles),
        org_ids=orgs,
        student_class_ids=learns,
        teacher_class_ids=teaches,
        child_ids=children,
        child_class_ids=children_learn,
        guardian_ids=guardians,
        is_minor=minor,
    )


A, B = frozenset({"5A"}), frozenset({"6B"})

# Class 5A: Anya, Boris, Dima. Class 6B: Vera and Egor (18, not a minor).
# Papa has children in both classes; Tamara teaches 6B and is Dima's mother (5A).
PEOPLE: dict[str, Member | None] = {
    "anya": _person("anya", Role.STUDENT, minor=True, learns=A, guardians=frozenset({"mama"})),
    "boris": _person("boris", Role.STUDENT, minor=True, learns=A, guardians=frozenset({"papa"})),
    "dima": _person("dima", Role.STUDENT, minor=True, learns=A, guardians=frozenset({"tamara"})),
    "vera": _person("vera", Role.STUDENT, minor=True, learns=B, guardians=frozenset({"papa"})),
    "egor": _person("egor", Role.STUDENT, learns=B),
    "mama": _person("mama", Role.GUARDIAN, children=frozenset({"anya"}), children_learn=A),
    "papa": _person(
        "papa", Role.GUARDIAN, children=frozenset({"boris", "vera"}), children_learn=A | B
    ),
    "tamara": _person(
        "tamara",
        Role.TEACHER,
        Role.GUARDIAN,
        teaches=B,
        children=frozenset({"dima"}),
        children_learn=A,
    ),
    "teacher_a": _person("teacher_a", Role.TEACHER, teaches=A),
    "principal": _person("principal", Role.STAFF),
    "unlinked": None,
    "outsider": _person(
        "outsider", Role.TEACHER, teaches=frozenset({"7C"}), orgs=frozenset({"school-2"})
    ),
}

OK = None  # the expectation "allowed", in the table below
UNLINKED_SENDER = Reason.UNLINKED_SENDER
UNLINKED_TARGET = Reason.UNLINKED_TARGET
OTHER_SCHOOL = Reason.OTHER_SCHOOL
MINOR = Reason.MINOR_PROTECTED
UNRELATED = Reason.NOT_RELATED

# (a, b, a contacts b, b contacts a)
PAIRS: list[tuple[str, str, Reason | None, Reason | None]] = [
    # pupils
    ("anya", "boris", OK, OK),  # classmates
    ("vera", "egor", OK, OK),  # classmates, one of age
    ("anya", "vera", MINOR, MINOR),  # different classes
    ("boris", "vera", MINOR, MINOR),  # siblings in different classes: only the parent links them
    ("anya", "egor", UNRELATED, MINOR),
    # pupils and guardians
    ("anya", "mama", OK, OK),  # own guardian, own child
    ("vera", "papa", OK, OK),
    ("dima", "tamara", OK, OK),
    ("anya", "papa", UNRELATED, MINOR),  # a classmate's parent
    ("vera", "mama", UNRELATED, MINOR),
    ("egor", "papa", UNRELATED, UNRELATED),  # a child's classmate of age
    ("egor", "mama", UNRELATED, UNRELATED),
    # pupils and the school's adults
    ("anya", "teacher_a", OK, OK),  # the pupil's own teacher
    ("vera", "teacher_a", UNRELATED, OK),  # not her teacher; teachers reach the whole school
    ("vera", "tamara", OK, OK),  # her teacher
    ("anya", "tamara", UNRELATED, OK),  # a classmate's mother who teaches another class
    ("anya", "principal", OK, OK),
    ("egor", "principal", OK, OK),
    # guardians
    ("mama", "papa", OK, OK),  # parents of the same class
    ("mama", "tamara", OK, OK),  # a parent of the same class, who also teaches
    ("papa", "tamara", OK, OK),  # and teaches his daughter
    ("mama", "teacher_a", OK, OK),  # her child's teacher
    ("mama", "principal", OK, OK),
    # the school's adults
    ("teacher_a", "tamara", OK, OK),
    ("teacher_a", "principal", OK, OK),
    # outside the directory or the school
    ("anya", "unlinked", UNLINKED_TARGET, UNLINKED_SENDER),
    ("principal", "unlinked", UNLINKED_TARGET, UNLINKED_SENDER),
    ("unlinked", "unlinked", UNLINKED_SENDER, UNLINKED_SENDER),
    ("outsider", "unlinked", UNLINKED_TARGET, UNLINKED_SENDER),
    ("anya", "outsider", OTHER_SCHOOL, OTHER_SCHOOL),
    ("teacher_a", "outsider", OTHER_SCHOOL, OTHER_SCHOOL),
    ("principal", "outsider", OTHER_SCHOOL, OTHER_SCHOOL),
]

CASES = [
    pytest.param(sender, target, expected, id=f"{sender}->{target}")
    for a, b, a_to_b, b_to_a in PAIRS
    for sender, target, expected in ((a, b, a_to_b), (b, a, b_to_a))
]


@pytest.mark.parametrize(("sender", "target", "expected"), CASES)
def test_contact(sender: str, target: str, expected: Reason | None) -> None:
    decision = may_contact(PEOPLE[sender], PEOPLE[target])
    assert decision == (ALLOW if expected is OK else refuse(expected))


@pytest.mark.parametrize("who", [name for name, m in PEOPLE.items() if m is not None])
def test_contacting_yourself_is_allowed(who: str) -> None:
    assert may_contact(PEOPLE[who], PEOPLE[who]) == ALLOW


def test_the_table_covers_every_person() -> None:
    assert {name for pair in PAIRS for name in pair[:2]} == set(PEOPLE)


# -- properties over arbitrary members ----------------------------------------------------------

_ids = st.sampled_from(["p1", "p2", "p3", "p4", "p5"])
_classes = st.frozensets(st.sampled_from(["c1", "c2", "c3"]), max_size=2)
_members = st.builds(
    Member,
    person_id=_ids,
    roles=st.frozensets(st.sampled_from(Role)),
    org_ids=st.frozensets(st.sampled_from(["o1", "o2"]), max_size=2),
    student_class_ids=_classes,
    teacher_class_ids=_classes,
    child_ids=st.frozensets(_ids, max_size=2),
    child_class_ids=_classes,
    guardian_ids=st.frozensets(_ids, max_size=2),
    is_minor=st.booleans(),
)
# A minor who is nothing but a pupil: reachable through classes and family only.
_minor_pupils = st.builds(
    Member,
    person_id=_ids,
    roles=st.just(frozenset({Role.STUDENT})),
    org_ids=st.frozensets(st.sampled_from(["o1", "o2"]), max_size=2),
    student_class_ids=_classes,
    guardian_ids=st.frozensets(_ids, max_size=2),
    is_minor=st.just(True),
)


@given(_members | st.none())
def test_nobody_outside_the_directory_contacts_or_is_contacted(member: Member | None) -> None:
    assert not may_contact(None, member).allowed
    assert not may_contact(member, None).allowed


@given(_members, _members)
def test_contact_stays_inside_a_school(sender: Member, target: Member) -> None:
    if may_contact(sender, target).allowed and sender.person_id != target.person_id:
        assert sender.org_ids & target.org_ids


@given(_members, _minor_pupils)
def test_a_minor_is_reached_only_by_classmates_family_and_school_adults(
    sender: Member, minor: Member
) -> None:
    related = (
        sender.person_id == minor.person_id
        or sender.is_school_adult
        or bool(sender.student_class_ids & minor.student_class_ids)
        or minor.person_id in sender.child_ids | sender.guardian_ids
    )
    decision = may_contact(sender, minor)
    if not related:
        assert decision.reason in (Reason.MINOR_PROTECTED, Reason.OTHER_SCHOOL)


@given(_members, _members)
def test_school_adults_reach_their_whole_school(sender: Member, target: Member) -> None:
    if sender.is_school_adult and sender.org_ids & target.org_ids:
        assert may_contact(sender, target) == ALLOW


@given(_members, _members, st.sampled_from(Role))
def test_another_role_only_adds_reach(sender: Member, target: Member, role: Role) -> None:
    if may_contact(sender, target).allowed:
        assert may_contact(attrs.evolve(sender, roles=sender.roles | {role}), target).allowed


@given(_members | st.none(), _members | st.none())
def test_a_refusal_always_says_why(sender: Member | None, target: Member | None) -> None:
    decision = may_contact(sender, target)
    assert decision.allowed == (decision.reason == "")
