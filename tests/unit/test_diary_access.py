"""Who sees a pupil's marks and a class's homework in the diary mini-app (access.py)."""

from __future__ import annotations

import pytest

from bridges.diary.access import Viewer, may_view_class, may_view_marks

PUPIL = Viewer(
    "p-1",
    frozenset({"student"}),
    frozenset({"school-1"}),
    student_class_ids=frozenset({"5a", "5a-eng1"}),
)
SELF = PUPIL
CLASSMATE = Viewer(
    "p-2", frozenset({"student"}), frozenset({"school-1"}), student_class_ids=frozenset({"5a"})
)
GUARDIAN = Viewer(
    "g-1",
    frozenset({"guardian"}),
    frozenset({"school-1"}),
    child_ids=frozenset({"p-1"}),
    child_class_ids=frozenset({"5a", "5a-eng1"}),
)
OTHER_GUARDIAN = Viewer(
    "g-2",
    frozenset({"guardian"}),
    frozenset({"school-1"}),
    child_ids=frozenset({"p-2"}),
    child_class_ids=frozenset({"5a"}),
)
TEACHER = Viewer(
    "t-1", frozenset({"teacher"}), frozenset({"school-1"}), teacher_class_ids=frozenset({"5a"})
)
GROUP_TEACHER = Viewer(
    "t-3",
    frozenset({"teacher"}),
    frozenset({"school-1"}),
    teacher_class_ids=frozenset({"5a-eng1"}),
)
OTHER_TEACHER = Viewer(
    "t-2", frozenset({"teacher"}), frozenset({"school-1"}), teacher_class_ids=frozenset({"6b"})
)
STAFF = Viewer("staff-1", frozenset({"staff"}), frozenset({"school-1"}))
OTHER_SCHOOL_STAFF = Viewer("staff-9", frozenset({"staff"}), frozenset({"school-2"}))
UNLINKED = Viewer(None)
# A guardian who is also a pupil's classmate's parent and a teacher elsewhere: roles add up.
TEACHER_PARENT = Viewer(
    "t-4",
    frozenset({"teacher", "guardian"}),
    frozenset({"school-1"}),
    teacher_class_ids=frozenset({"6b"}),
    child_ids=frozenset({"p-1"}),
    child_class_ids=frozenset({"5a"}),
)


@pytest.mark.parametrize(
    ("viewer", "allowed"),
    [
        (SELF, True),
        (GUARDIAN, True),
        (TEACHER, True),
        (GROUP_TEACHER, True),  # teaches the pupil's subject group
        (STAFF, True),
        (TEACHER_PARENT, True),
        (CLASSMATE, False),
        (OTHER_GUARDIAN, False),
        (OTHER_TEACHER, False),
        (OTHER_SCHOOL_STAFF, False),
        (UNLINKED, False),
    ],
    ids=lambda v: v.person_id if isinstance(v, Viewer) else str(v),
)
def test_who_sees_a_pupils_marks(viewer: Viewer, allowed: bool) -> None:
    assert may_view_marks(viewer, "p-1", PUPIL) is allowed


def test_without_the_pupils_directory_entry_only_the_pupil_and_guardians_see_marks() -> None:
    unknown = Viewer(None)
    assert may_view_marks(SELF, "p-1", unknown)
    assert may_view_marks(GUARDIAN, "p-1", unknown)
    assert not may_view_marks(TEACHER, "p-1", unknown)
    assert not may_view_marks(STAFF, "p-1", unknown)
    assert not may_view_marks(TEACHER, "p-1", None)


def test_a_pupil_answer_for_someone_else_is_not_trusted() -> None:
    assert not may_view_marks(TEACHER, "p-9", PUPIL)  # asked for p-9, got p-1's entry
    not_a_pupil = Viewer("p-1", frozenset({"teacher"}), student_class_ids=frozenset({"5a"}))
    assert not may_view_marks(TEACHER, "p-1", not_a_pupil)


def test_a_person_id_equal_to_the_pupils_without_the_student_role_sees_nothing() -> None:
    assert not may_view_marks(Viewer("p-1", frozenset({"guardian"})), "p-1", PUPIL)
    assert not may_view_marks(SELF, "", PUPIL)


@pytest.mark.parametrize(
    ("viewer", "class_id", "allowed"),
    [
        (SELF, "5a", True),
        (SELF, "5a-eng1", True),
        (CLASSMATE, "5a", True),
        (CLASSMATE, "5a-eng1", False),
        (GUARDIAN, "5a", True),
        (OTHER_GUARDIAN, "5a", True),
        (OTHER_GUARDIAN, "6b", False),
        (TEACHER, "5a", True),
        (TEACHER, "6b", False),
        (OTHER_TEACHER, "6b", True),
        (OTHER_TEACHER, "5a", False),
        (STAFF, "6b", True),
        (UNLINKED, "5a", False),
        (SELF, "", False),
    ],
)
def test_who_sees_a_class_and_its_news(viewer: Viewer, class_id: str, allowed: bool) -> None:
    assert may_view_class(viewer, class_id) is allowed


def test_a_who_answer_is_read_defensively() -> None:
    viewer = Viewer.from_who(
        {
            "user_id": "@ivanov:school.test",
            "person": "p-1",
            "roles": ["student", 5],
            "org_ids": ["school-1"],
            "student_class_ids": ["5a"],
            "teacher_class_ids": "5a",
            "child_ids": None,
        }
    )
    assert viewer == Viewer(
        "p-1",
        frozenset({"student"}),
        frozenset({"school-1"}),
        student_class_ids=frozenset({"5a"}),
        user_id="@ivanov:school.test",
    )
    assert Viewer.from_who({"person": None, "roles": []}).person_id is None
    assert Viewer.from_who({"person": ""}).person_id is None
