"""Year end (policy/year_end.py): which enrollments are over, who has left, which classes are
archived, and what the planner and the power levels make of it."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from sferum_shared.model import Enrollment, EnrollmentRole
from sferum_shared.rooms import RoomKey, RoomKind
from synapse_sferum.policy.provisioning import (
    ARCHIVE_MARK,
    ClassView,
    OrgView,
    RoomPlan,
    desired_rooms,
    power_levels,
)
from synapse_sferum.policy.room_kinds import PLATFORM
from synapse_sferum.policy.year_end import (
    YearEnd,
    enrollment_counts,
    enrollment_over,
    has_left,
    year_end,
)

DAY = date(2027, 6, 1)
BEFORE = date(2027, 5, 31)
AFTER = date(2027, 6, 2)


@pytest.mark.parametrize(
    ("end", "today", "over"),
    [
        pytest.param(None, DAY, False, id="no endDate never ends"),
        pytest.param(DAY, BEFORE, False, id="the day before"),
        pytest.param(DAY, DAY, False, id="endDate is the last day"),
        pytest.param(DAY, AFTER, True, id="the day after"),
    ],
)
def test_an_enrollment_is_over_from_its_end_date(
    end: date | None, today: date, over: bool
) -> None:
    assert enrollment_over(end, today) is over


@pytest.mark.parametrize(
    ("ends", "left"),
    [
        pytest.param([], False, id="no enrollments: leaves only by leaving the roster"),
        pytest.param([BEFORE], True, id="one enrollment, over"),
        pytest.param([BEFORE, None], False, id="one over, one open"),
        pytest.param([BEFORE, DAY], False, id="one over, one on its last day"),
        pytest.param([BEFORE, BEFORE], True, id="all over"),
    ],
)
def test_a_person_has_left_when_every_enrollment_is_over(
    ends: list[date | None], left: bool
) -> None:
    assert has_left(ends, DAY) is left


def enrollment(
    sid: str, class_id: str, person: str, end: date | None, role: str = "student"
) -> Enrollment:
    return Enrollment(sid, class_id, person, EnrollmentRole(role), end_date=end)


# 7a (old sourcedId) ends: p1 moves on to 8a (new sourcedId), p2 leaves the school, the
# teacher t1 goes on teaching 8a; 5b goes on; 9c has no enrollments at all.
ROSTER = [
    enrollment("e1", "7a", "p1", DAY),
    enrollment("e2", "7a", "p2", DAY),
    enrollment("e3", "7a", "t1", DAY, "teacher"),
    enrollment("e4", "8a", "p1", None),
    enrollment("e5", "8a", "t1", date(2028, 6, 1), "teacher"),
    enrollment("e6", "5b", "p3", None),
    enrollment("e7", "5b", "p4", DAY),
]


@pytest.mark.parametrize(
    ("today", "left", "archived"),
    [
        pytest.param(DAY, set(), set(), id="on the last day nothing changes"),
        pytest.param(AFTER, {"p2", "p4"}, {"7a"}, id="from the day after"),
    ],
)
def test_who_has_left_and_which_classes_are_archived(
    today: date, left: set[str], archived: set[str]
) -> None:
    assert year_end(ROSTER, today) == YearEnd(frozenset(left), frozenset(archived))


@pytest.mark.parametrize(
    ("sid", "counts"),
    [
        pytest.param("e1", True, id="archived class keeps a pupil who moved on"),
        pytest.param("e2", False, id="nobody who left"),
        pytest.param("e3", True, id="archived class keeps its teacher"),
        pytest.param("e4", True, id="an open enrollment"),
        pytest.param("e6", True, id="a running class"),
        pytest.param("e7", False, id="a running class drops a pupil whose enrollment is over"),
    ],
)
def test_which_enrollments_put_people_in_rooms(sid: str, counts: bool) -> None:
    state = year_end(ROSTER, AFTER)
    [e] = [e for e in ROSTER if e.sourced_id == sid]
    assert enrollment_counts(e, state, AFTER) is counts


def test_enrollment_that_ended_for_a_person_still_in_the_class_drops_them() -> None:
    state = YearEnd(left=frozenset(), archived=frozenset())
    assert not enrollment_counts(enrollment("e", "5b", "p", DAY), state, AFTER)


def plans(archived: bool) -> dict[RoomKey, RoomPlan]:
    org = OrgView(
        org_id="school",
        name="Школа",
        teacher_ids=frozenset({"t1"}),
        staff_ids=frozenset(),
        classes=(
            ClassView("7a", "7А", True, frozenset({"p1"}), frozenset({"t1"}), archived=archived),
        ),
        pupils=(),
    )
    linked = {"p1": "@p1:s", "t1": "@t1:s"}
    return {plan.key: plan for plan in desired_rooms(org, linked)}


@pytest.mark.parametrize(
    ("kind", "posts_when_running"),
    [(RoomKind.CLASS_SPACE, False), (RoomKind.CLASS_CHAT, True), (RoomKind.CLASS_NEWS, True)],
)
def test_an_archived_class_keeps_its_rooms_and_members_read_only(
    kind: RoomKind, posts_when_running: bool
) -> None:
    running = plans(archived=False)[RoomKey(kind, "7a")]
    archive = plans(archived=True)[RoomKey(kind, "7a")]
    assert archive.members == running.members and archive.members
    assert archive.name == f"{running.name} {ARCHIVE_MARK}"
    assert archive.call is None
    levels: dict[str, Any] = power_levels(archive, "@bot:s", None)
    assert levels["users"]["@bot:s"] == PLATFORM
    others = [level for user, level in levels["users"].items() if user != "@bot:s"]
    assert max([levels["users_default"], *others]) < PLATFORM
    for key in ("events_default", "state_default", "invite", "redact", "kick", "ban"):
        assert levels[key] == PLATFORM, key
    assert set(levels["events"].values()) == {PLATFORM}
    assert levels["notifications"] == {"room": PLATFORM}
    running_levels: dict[str, Any] = power_levels(running, "@bot:s", None)
    assert set(levels["events"]) == set(running_levels["events"])
    assert (running_levels["events_default"] < PLATFORM) is posts_when_running


# The whole school's year ends on 31 May: on 1 June every enrollment is over.
SUMMER_DAY = date(2027, 6, 1)
LAST_DAY = date(2027, 5, 31)
WHOLE_YEAR = [
    enrollment("y1", "7a", "p1", LAST_DAY),
    enrollment("y2", "7a", "t1", LAST_DAY, "teacher"),
    enrollment("y3", "11a", "p2", LAST_DAY),  # graduates this year
]


def test_between_two_years_nobody_leaves_and_nothing_is_archived() -> None:
    state = year_end(WHOLE_YEAR, SUMMER_DAY)
    assert state == YearEnd(frozenset(), frozenset(), between_years=True)
    assert all(enrollment_counts(e, state, SUMMER_DAY) for e in WHOLE_YEAR)


def test_next_years_roster_says_who_goes_on_and_who_has_left() -> None:
    """In August the new roster has p1 in 8a and the teacher on; p2 has only the old one."""
    next_year = [
        *WHOLE_YEAR,
        enrollment("n1", "8a", "p1", date(2028, 5, 31)),
        enrollment("n2", "8a", "t1", date(2028, 5, 31), "teacher"),
    ]
    august = date(2027, 8, 25)
    state = year_end(next_year, august)
    assert state == YearEnd(frozenset({"p2"}), frozenset({"7a", "11a"}))
    assert [e.sourced_id for e in next_year if enrollment_counts(e, state, august)] == [
        "y1",  # the archived 7a keeps p1 and its teacher, who go on in 8a
        "y2",
        "n1",
        "n2",
    ]


def test_a_directory_without_enrollments_is_not_between_years() -> None:
    assert year_end([], SUMMER_DAY) == YearEnd(frozenset(), frozenset())
