"""Real names and the teacher's badge: only teachers carry the cap, whatever the roster says."""

import pytest

from sferum_shared.model import Member, Role
from synapse_sferum.policy import TEACHER_BADGE, asserted_role, display_name_for

TEACHER = frozenset({Role.TEACHER})
PUPIL = frozenset({Role.STUDENT})
PARENT = frozenset({Role.GUARDIAN})
STAFF = frozenset({Role.STAFF})


@pytest.mark.parametrize(
    ("real_name", "roles", "expected"),
    [
        pytest.param(
            "Марина Сергеевна Иванова", TEACHER, "Марина Сергеевна Иванова 🎓", id="teacher"
        ),
        pytest.param("Артём Волков", PUPIL, "Артём Волков", id="pupil"),
        pytest.param("Ольга Смирнова", STAFF, "Ольга Смирнова", id="staff-no-badge"),
        pytest.param("Артём 🎓 Волков", PUPIL, "Артём Волков", id="cap-in-roster-name"),
        pytest.param("Артём Волков 🎓️", PUPIL, "Артём Волков", id="cap-with-selector"),
        pytest.param("Артём 👨‍🎓", PUPIL, "Артём 👨", id="zwj-student-emoji"),
        pytest.param("Анна 🎓", TEACHER, "Анна 🎓", id="teacher-one-badge-only"),
        pytest.param("  Анна   Петрова ", PARENT, "Анна Петрова", id="spaces"),
        pytest.param(
            "Анна", frozenset({Role.TEACHER, Role.GUARDIAN}), "Анна 🎓", id="teacher-parent"
        ),
    ],
)
def test_display_names(real_name: str, roles: frozenset[Role], expected: str) -> None:
    assert display_name_for(real_name, roles) == expected


def test_only_teachers_end_with_the_badge() -> None:
    for roles in (PUPIL, PARENT, STAFF):
        assert TEACHER_BADGE not in display_name_for(f"X {TEACHER_BADGE}", roles)


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (TEACHER, "teacher"),
        (frozenset({Role.TEACHER, Role.GUARDIAN}), "teacher"),
        (STAFF, "staff"),
        (frozenset({Role.STAFF, Role.GUARDIAN}), "staff"),
        (PARENT, "guardian"),
        (PUPIL, "student"),
    ],
)
def test_asserted_role(roles: frozenset[Role], expected: str) -> None:
    assert asserted_role(Member("p", roles, frozenset({"s"}))) == expected
