"""The planner's per-school views, built from the shipped demo roster."""

from datetime import date, timedelta

import attrs

from sferum_shared.model import Enrollment, EnrollmentRole
from synapse_sferum.directory import guardianship_pairs
from synapse_sferum.roster.merge import DirectorySnapshot, merge
from synapse_sferum.roster.oneroster import parse_roster
from synapse_sferum.views import org_views
from tests.demo import ROSTER, demo_folder

TODAY = date(2026, 9, 21)
DEMO = demo_folder(ROSTER, TODAY)


def demo_snapshot() -> DirectorySnapshot:
    empty = DirectorySnapshot(orgs={}, people={}, demographics={}, classes={}, enrollments={})
    return merge(empty, parse_roster(DEMO, TODAY))


def test_one_view_per_school_with_its_classes_and_people() -> None:
    snapshot = demo_snapshot()
    [school] = org_views(snapshot, guardianship_pairs(snapshot.people), TODAY)
    assert school.org_id == "school-1"
    assert school.staff_ids == {"staff-1", "staff-2"}
    assert school.teacher_ids == {"t-1", "t-2", "t-3"}
    classes = {c.class_id: c for c in school.classes}
    assert set(classes) == {"5a", "6b", "5a-eng1"}
    assert classes["5a"].is_homeroom and not classes["5a-eng1"].is_homeroom
    assert classes["5a"].student_ids == {"p-5a-1", "p-5a-2", "p-5a-3", "p-5a-4"}
    assert len(classes["5a"].class_teacher_ids) == 1
    pupils = {p.person_id: p for p in school.pupils}
    assert pupils["p-5a-3"].guardian_ids == {"g-lebedeva"}
    assert pupils["p-6b-3"].guardian_ids == {"g-lebedeva"}
    assert pupils["p-5a-1"].name == "Артём Волков"


def test_disabled_people_are_left_out() -> None:
    snapshot = demo_snapshot()
    people = dict(snapshot.people)
    people["p-5a-1"] = attrs.evolve(people["p-5a-1"], enabled=False)
    disabled = DirectorySnapshot(
        orgs=snapshot.orgs,
        people=people,
        demographics=snapshot.demographics,
        classes=snapshot.classes,
        enrollments=snapshot.enrollments,
    )
    [school] = org_views(disabled, guardianship_pairs(disabled.people), TODAY)
    assert "p-5a-1" not in {p.person_id for p in school.pupils}
    assert all("p-5a-1" not in c.student_ids for c in school.classes)


def test_enrollments_that_ended_leave_people_out_and_archive_their_class() -> None:
    """5А's year ended yesterday; Артём went on to 6Б (a new enrollment), the others of 5А
    enrolled nowhere else have left. 5А is archived with who was in it at the end and has not
    left; the English group, whose enrollments go on, stays as it is."""
    snapshot = demo_snapshot()
    yesterday = TODAY - timedelta(days=1)
    enrollments = {
        key: attrs.evolve(e, end_date=yesterday) if e.class_id == "5a" else e
        for key, e in snapshot.enrollments.items()
    }
    enrollments["e-6b-p-5a-1"] = Enrollment("e-6b-p-5a-1", "6b", "p-5a-1", EnrollmentRole.STUDENT)
    ended = attrs.evolve(snapshot, enrollments=enrollments)
    [school] = org_views(ended, guardianship_pairs(ended.people), TODAY)
    classes = {c.class_id: c for c in school.classes}
    assert classes["5a"].archived and not classes["6b"].archived
    assert not classes["5a-eng1"].archived
    # p-5a-2 is still in the English group; p-5a-3 and p-5a-4 had only 5А
    assert classes["5a"].student_ids == {"p-5a-1", "p-5a-2"}
    # t-1 taught only 5А, so has left too; t-3 goes on teaching 6Б and the group
    assert (classes["5a"].teacher_ids, classes["5a"].class_teacher_ids) == ({"t-3"}, set())
    assert "t-1" not in school.teacher_ids
    assert "p-5a-1" in classes["6b"].student_ids
    pupils = {p.person_id for p in school.pupils}
    assert {"p-5a-3", "p-5a-4"}.isdisjoint(pupils) and {"p-5a-1", "p-5a-2"} <= pupils
    # The day before, nothing had ended.
    [before] = org_views(ended, guardianship_pairs(ended.people), yesterday)
    assert not any(c.archived for c in before.classes)
    assert {"p-5a-3", "p-5a-4"} <= {p.person_id for p in before.pupils}
