"""Merging a parsed roster into the directory, checking references, and diffing the result."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sferum_shared.model import (
    RECORD_KINDS,
    ClassType,
    Demographics,
    Enrollment,
    EnrollmentRole,
    ImportCounts,
    ImportMode,
    KindChange,
    Org,
    Origin,
    Person,
    Role,
    RosterError,
    RosterImport,
    SchoolClass,
)
from synapse_sferum.roster.merge import DirectorySnapshot, diff, merge
from synapse_sferum.roster.oneroster import parse_roster
from tests.demo import ROSTER, demo_folder
from tests.district import generate_district

TODAY = date(2026, 9, 21)
DEMO_ROSTER = demo_folder(ROSTER, TODAY)
BULK, DELTA = ImportMode.BULK, ImportMode.DELTA

# The 1.1 headers, for the columns that problems point at.
HEADERS = {
    "orgs": ("orgs.csv", "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId"),
    "people": (
        "users.csv",
        "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,"
        "givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,"
        "password",
    ),
    "demographics": ("demographics.csv", "sourcedId,status,dateLastModified,birthDate,sex"),
    "classes": (
        "classes.csv",
        "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,"
        "location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods",
    ),
    "enrollments": (
        "enrollments.csv",
        "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,"
        "primary,beginDate,endDate",
    ),
}


def origin(kind: str, line: int) -> Origin | None:
    return Origin(HEADERS[kind][0], line) if line else None


def org(sourced_id: str, parent: str | None = None, line: int = 0) -> Org:
    return Org(sourced_id, f"Школа {sourced_id}", "school", parent, origin("orgs", line))


def person(
    sourced_id: str, role: Role, agents: tuple[str, ...] = (), org_id: str = "o1", line: int = 0
) -> Person:
    return Person(
        sourced_id,
        "Анна",
        "Иванова",
        frozenset({role}),
        (org_id,),
        agent_ids=agents,
        origin=origin("people", line),
    )


def school_class(sourced_id: str, org_id: str = "o1", line: int = 0) -> SchoolClass:
    return SchoolClass(
        sourced_id, sourced_id.upper(), org_id, ClassType.HOMEROOM, origin("classes", line)
    )


def enrollment(
    sourced_id: str,
    class_id: str,
    person_id: str,
    role: EnrollmentRole = EnrollmentRole.STUDENT,
    line: int = 0,
) -> Enrollment:
    return Enrollment(sourced_id, class_id, person_id, role, origin=origin("enrollments", line))


def demographics(sourced_id: str, line: int = 0) -> Demographics:
    return Demographics(sourced_id, date(2015, 3, 14), origin("demographics", line))


def records(*items: Any) -> dict[str, Any]:
    return {item.sourced_id: item for item in items}


def change(
    kind: str, mode: ImportMode, *upserts: object, deleted: dict[str, int] | None = None
) -> KindChange:
    file, header = HEADERS[kind]
    return KindChange(
        mode,
        upserts=records(*upserts),
        deletions=frozenset(deleted or {}),
        file=file,
        columns={name: n for n, name in enumerate(header.split(","), 1)},
        deletion_lines=deleted or {},
    )


def roster(**kinds: KindChange) -> RosterImport:
    absent = {kind: KindChange(ImportMode.ABSENT, file=HEADERS[kind][0]) for kind in RECORD_KINDS}
    return RosterImport(**(absent | kinds))


def bulk_of(snapshot: DirectorySnapshot) -> RosterImport:
    return roster(
        **{kind: change(kind, BULK, *snapshot.kind(kind).values()) for kind in RECORD_KINDS}
    )


def school() -> DirectorySnapshot:
    """One school: a pupil with a guardian, a teacher, and a class both are enrolled in."""
    return DirectorySnapshot(
        orgs=records(org("o1")),
        people=records(
            person("s1", Role.STUDENT, agents=("g1",)),
            person("g1", Role.GUARDIAN, agents=("s1",)),
            person("t1", Role.TEACHER),
        ),
        demographics=records(demographics("s1")),
        classes=records(school_class("c1")),
        enrollments=records(
            enrollment("e1", "c1", "s1"), enrollment("e2", "c1", "t1", EnrollmentRole.TEACHER)
        ),
    )


def test_bulk_replaces_delta_upserts_and_deletes_absent_keeps() -> None:
    current = school()
    renamed = attrs.evolve(current.people["t1"], family_name="Петрова")
    merged = merge(
        current,
        roster(
            people=change(
                "people",
                DELTA,
                renamed,
                person("t2", Role.TEACHER),
                deleted={"nobody": 5},  # deleting what is not there is fine
            ),
            enrollments=change("enrollments", BULK, enrollment("e1", "c1", "s1")),
        ),
    )

    assert merged.people == current.people | {"t1": renamed, "t2": person("t2", Role.TEACHER)}
    assert merged.enrollments == {"e1": enrollment("e1", "c1", "s1")}
    assert merged.classes is current.classes
    changes = diff(current, merged)
    assert changes.counts() == {
        "orgs": ImportCounts(),
        "people": ImportCounts(created=1, updated=1),
        "demographics": ImportCounts(),
        "classes": ImportCounts(),
        "enrollments": ImportCounts(deleted=1),
    }
    assert changes.kind("people").created == {"t2"}
    assert changes.changed_person_ids() == {"t1", "t2"}


def test_a_pupils_change_reaches_their_guardians() -> None:
    current = school()
    moved = merge(
        current,
        roster(
            classes=change("classes", DELTA, school_class("c2")),
            enrollments=change("enrollments", DELTA, enrollment("e1", "c2", "s1")),
        ),
    )
    assert diff(current, moved).changed_person_ids() == {"s1", "g1"}


def test_origins_do_not_count_as_changes() -> None:
    current = school()
    again = merge(current, bulk_of(current))
    assert attrs.evolve(again.orgs["o1"], origin=Origin("x.csv", 9)) == again.orgs["o1"]
    assert not any(diff(current, again).kind(kind).ids for kind in RECORD_KINDS)


@pytest.mark.parametrize(
    ("change_of", "problems"),
    [
        pytest.param(
            roster(enrollments=change("enrollments", DELTA, enrollment("e3", "c9", "s1", line=4))),
            ["enrollments.csv:4:4: class 'c9' is not in the directory"],
            id="enrollment to an unknown class",
        ),
        pytest.param(
            roster(
                classes=change("classes", BULK, school_class("c1", line=2)),
                enrollments=change("enrollments", DELTA, enrollment("e3", "c9", "s1", line=4)),
            ),
            ["enrollments.csv:4:4: class 'c9' is not in classes.csv"],
            id="enrollment to a class the bulk file lacks",
        ),
        pytest.param(
            roster(
                classes=change("classes", DELTA, deleted={"c1": 3}),
                enrollments=change(
                    "enrollments",
                    DELTA,
                    enrollment("e3", "c1", "t1", EnrollmentRole.TEACHER, line=2),
                ),
            ),
            [
                "classes.csv:3:0: enrollment 'e1' (kept from the directory)"
                " refers to class 'c1' that this line deletes",
                "classes.csv:3:0: enrollment 'e2' (kept from the directory)"
                " refers to class 'c1' that this line deletes",
                "enrollments.csv:2:4: class 'c1' is deleted on line 3 of classes.csv",
            ],
            id="class deleted under its enrollments",
        ),
        pytest.param(
            roster(
                people=change(
                    "people", DELTA, person("s2", Role.STUDENT, line=7), deleted={"t1": 3}
                ),
                enrollments=change("enrollments", DELTA, enrollment("e3", "c1", "s3", line=2)),
            ),
            [
                "enrollments.csv:2:6: person 's3' is neither in users.csv nor in the directory",
                "users.csv:3:0: enrollment 'e2' (kept from the directory)"
                " refers to person 't1' that this line deletes",
            ],
            id="enrollment of an unknown person",
        ),
        pytest.param(
            roster(enrollments=change("enrollments", DELTA, enrollment("e3", "c1", "g1", line=5))),
            ["enrollments.csv:5:7: role 'student' needs a student, but 'g1' is guardian"],
            id="guardian enrolled as a student",
        ),
        pytest.param(
            roster(
                enrollments=change(
                    "enrollments",
                    DELTA,
                    enrollment("e3", "c1", "s1", EnrollmentRole.TEACHER, line=5),
                )
            ),
            ["enrollments.csv:5:7: role 'teacher' needs a teacher or staff, but 's1' is student"],
            id="student enrolled as a teacher",
        ),
        pytest.param(
            roster(classes=change("classes", DELTA, school_class("c2", "o9", line=3))),
            ["classes.csv:3:10: school 'o9' is not in the directory"],
            id="class of an unknown school",
        ),
        pytest.param(
            roster(orgs=change("orgs", DELTA, org("o2", parent="o9", line=2))),
            ["orgs.csv:2:7: parent org 'o9' is neither in orgs.csv nor in the directory"],
            id="org with an unknown parent",
        ),
        pytest.param(
            roster(
                people=change("people", DELTA, person("t2", Role.TEACHER, org_id="o9", line=6))
            ),
            ["users.csv:6:5: org 'o9' is not in the directory"],
            id="person in an unknown org",
        ),
        pytest.param(
            roster(
                people=change("people", DELTA, person("s2", Role.STUDENT, agents=("g9",), line=6))
            ),
            ["users.csv:6:16: agent 'g9' is neither in users.csv nor in the directory"],
            id="unknown agent",
        ),
        pytest.param(
            roster(
                people=change("people", DELTA, person("s2", Role.STUDENT, agents=("t1",), line=6))
            ),
            [
                "users.csv:6:16: agent 't1' is teacher and 's2' is student, but a student's "
                "agents must be guardians and a guardian's agents students"
            ],
            id="teacher as a pupil's agent",
        ),
        pytest.param(
            roster(demographics=change("demographics", DELTA, demographics("s9", line=2))),
            ["demographics.csv:2:1: person 's9' is not in the directory"],
            id="demographics of nobody",
        ),
        pytest.param(
            roster(classes=change("classes", BULK, school_class("c2", line=2))),
            [
                "classes.csv:0:0: enrollment 'e1' (kept from the directory)"
                " refers to class 'c1' that this import removes",
                "classes.csv:0:0: enrollment 'e2' (kept from the directory)"
                " refers to class 'c1' that this import removes",
            ],
            id="bulk file drops a class still in use",
        ),
        pytest.param(
            roster(
                people=change("people", DELTA, person("s1", Role.GUARDIAN, agents=("g1",), line=8))
            ),
            [
                "users.csv:8:0: person 'g1' (kept from the directory): agent 's1' is guardian and "
                "'g1' is guardian, but a student's agents must be guardians and a guardian's "
                "agents students",
                "users.csv:8:0: enrollment 'e1' (kept from the directory): role 'student' needs a "
                "student, but 's1' is guardian",
                "users.csv:8:16: agent 'g1' is guardian and 's1' is guardian, but a student's "
                "agents must be guardians and a guardian's agents students",
            ],
            id="pupil turned guardian",
        ),
    ],
)
def test_reports_each_broken_reference_at_its_place(
    change_of: RosterImport, problems: list[str]
) -> None:
    with pytest.raises(RosterError) as err:
        merge(school(), change_of)
    assert [str(p) for p in err.value.problems] == problems


def test_an_import_that_breaks_nothing_passes() -> None:
    current = school()
    merged = merge(
        current,
        roster(
            people=change("people", DELTA, person("s1", Role.STUDENT), deleted={"t1": 2, "g1": 3}),
            enrollments=change("enrollments", DELTA, deleted={"e2": 2}),
        ),
    )
    assert set(merged.people) == {"s1"}


def test_the_demo_roster_merges_into_an_empty_directory() -> None:
    directory = merge(DirectorySnapshot(), parse_roster(DEMO_ROSTER, TODAY))

    counts = {kind: len(directory.kind(kind)) for kind in RECORD_KINDS}
    assert counts == {"orgs": 1, "people": 22, "demographics": 8, "classes": 3, "enrollments": 15}
    roles = [role for p in directory.people.values() for role in p.roles]
    assert {role: roles.count(role) for role in Role} == {
        Role.STAFF: 2,
        Role.TEACHER: 3,
        Role.STUDENT: 8,
        Role.GUARDIAN: 9,
    }
    assert directory.classes["5a"].title == "5А"
    class_teachers = {e.class_id: e.person_id for e in directory.enrollments.values() if e.primary}
    assert class_teachers == {"5a": "t-1", "6b": "t-2", "5a-eng1": "t-3"}
    pupils = {
        e.person_id for e in directory.enrollments.values() if e.role is EnrollmentRole.STUDENT
    }
    assert all(directory.demographics[p].birth_date.year >= 2013 for p in pupils)


def test_the_demo_roster_reports_an_enrollment_to_an_unknown_class(tmp_path: Path) -> None:
    folder = shutil.copytree(DEMO_ROSTER, tmp_path / "roster")
    with (folder / "enrollments.csv").open("a", encoding="utf-8") as file:
        file.write("e-7v-p-5a-1,,,7v,school-1,p-5a-1,student,false,,\n")
    with pytest.raises(RosterError) as err:
        merge(DirectorySnapshot(), parse_roster(folder, TODAY))
    assert [str(p) for p in err.value.problems] == [
        "enrollments.csv:17:4: class '7v' is not in classes.csv"
    ]


def test_a_small_district_parses_and_merges(tmp_path: Path) -> None:
    size = generate_district(tmp_path / "a", schools=2, pupils_per_school=40, seed=7)
    directory = merge(DirectorySnapshot(), parse_roster(tmp_path / "a", TODAY))

    assert len(directory.orgs) == size.orgs == 3
    assert len(directory.people) == size.people
    assert len(directory.classes) == size.classes == 66
    assert len(directory.enrollments) == size.enrollments
    assert size.pupils == 80 and size.teachers == 120
    generate_district(tmp_path / "b", schools=2, pupils_per_school=40, seed=7)
    for file in (tmp_path / "a").iterdir():
        assert file.read_bytes() == (tmp_path / "b" / file.name).read_bytes()


# -- properties ---------------------------------------------------------------------------------

NAMES = st.sampled_from(["Анна", "Пётр", "Мария"])


@st.composite
def snapshots(draw: st.DrawFn) -> DirectorySnapshot:
    """A consistent directory, drawn from small id sets so that two draws overlap."""

    def some(ids: list[str], min_size: int = 0) -> list[str]:
        return draw(st.lists(st.sampled_from(ids), unique=True, min_size=min_size)) if ids else []

    org_ids = some(["o1", "o2", "o3"], min_size=1)
    orgs = [
        Org(i, draw(NAMES), "school", draw(st.none() | st.sampled_from(org_ids))) for i in org_ids
    ]
    roles = {
        i: draw(st.sampled_from([Role.STUDENT, Role.GUARDIAN, Role.TEACHER]))
        for i in some([f"p{n}" for n in range(8)])
    }
    by_role = {role: [i for i, r in roles.items() if r is role] for role in Role}
    partners = {
        Role.STUDENT: by_role[Role.GUARDIAN],
        Role.GUARDIAN: by_role[Role.STUDENT],
        Role.TEACHER: [],
    }
    people = [
        Person(
            i,
            draw(NAMES),
            "Иванова",
            frozenset({role}),
            tuple(some(org_ids, min_size=1)),
            agent_ids=tuple(some(partners[role])),
            enabled=draw(st.booleans()),
        )
        for i, role in roles.items()
    ]
    classes = [
        SchoolClass(
            i, draw(NAMES), draw(st.sampled_from(org_ids)), draw(st.sampled_from(ClassType))
        )
        for i in some(["c1", "c2", "c3"])
    ]
    enrollable = by_role[Role.STUDENT] + by_role[Role.TEACHER]
    pairs = [(c.sourced_id, p) for c in classes for p in enrollable]
    enrollments = [
        Enrollment(
            f"e-{c}-{p}",
            c,
            p,
            EnrollmentRole.STUDENT if roles[p] is Role.STUDENT else EnrollmentRole.TEACHER,
            primary=draw(st.booleans()),
        )
        for c, p in (draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else [])
    ]
    birth_dates = st.none() | st.dates(date(2008, 1, 1), date(2019, 12, 31))
    return DirectorySnapshot(
        orgs=records(*orgs),
        people=records(*people),
        demographics=records(*(Demographics(i, draw(birth_dates)) for i in some(list(roles)))),
        classes=records(*classes),
        enrollments=records(*enrollments),
    )


@given(snapshots(), snapshots())
def test_a_bulk_import_makes_the_directory_equal_to_it(
    a: DirectorySnapshot, b: DirectorySnapshot
) -> None:
    merged = merge(a, bulk_of(b))
    assert merged == b
    changes = diff(a, merged)
    for kind in RECORD_KINDS:
        old, new = a.kind(kind), b.kind(kind)
        assert changes.kind(kind).created == new.keys() - old.keys()
        assert changes.kind(kind).deleted == old.keys() - new.keys()
    again = diff(merged, merge(merged, bulk_of(b)))
    assert not any(again.kind(kind).ids for kind in RECORD_KINDS)
    assert again.changed_person_ids() == frozenset()


@given(snapshots(), snapshots())
def test_a_diff_sent_as_a_delta_turns_one_directory_into_the_other(
    a: DirectorySnapshot, b: DirectorySnapshot
) -> None:
    changes = diff(a, b)
    delta = roster(
        **{
            kind: change(
                kind,
                DELTA,
                *(
                    b.kind(kind)[i]
                    for i in changes.kind(kind).created | changes.kind(kind).updated
                ),
                deleted=dict.fromkeys(changes.kind(kind).deleted, 1),
            )
            for kind in RECORD_KINDS
        }
    )
    assert merge(a, delta) == b
