"""Year end (docs/rooms-and-rules.md, «Year end»): whose enrollments are over, who has left,
which classes are archived.

OneRoster's `enrollments.endDate` is read as the enrollment's last day: it is over from the day
after, by the school's own date. Exporters differ (some write the day after the last school
day, Russian diaries and our demo the year's last day, 31 May); read as the last day, a date
can keep someone one day longer, never shut an account a day early. An enrollment without an
`endDate` never ends.

- A person who has enrollments and all of them are over has left: the same as leaving the
  roster (their account is shut, they leave the provisioned rooms, and after the grace period
  the account is deactivated). People without enrollments (guardians, staff) never leave this
  way; they leave by leaving the roster.
- A class the roster still lists whose every enrollment is over is archived: its rooms are kept,
  read-only, with the members it had at the end who have not left (teachers, pupils who moved
  on to another class). A class the roster drops is not archived: its rooms are emptied.
- Between two school years nobody leaves and nothing is archived by date: while no enrollment
  of the directory runs (exporters stamp every enrollment with the year's last day, so on
  1 June all of them are over), the end of the year is not everybody's departure. Everyone
  stays where they were until next year's roster says who goes on (a new enrollment) and who
  has left (only ended ones); then the dates decide again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import attrs

from sferum_shared.model import Enrollment


def enrollment_over(end_date: date | None, today: date) -> bool:
    """Whether an enrollment with this `endDate` (its last day) is over on `today`."""
    return end_date is not None and today > end_date


def has_left(end_dates: Iterable[date | None], today: date) -> bool:
    """Whether a person with enrollments ending on these dates has left (none: never)."""
    ends = list(end_dates)
    return bool(ends) and all(enrollment_over(end, today) for end in ends)


@attrs.frozen
class YearEnd:
    """What the directory's enrollments say on one day."""

    left: frozenset[str]  # person sourcedIds whose every enrollment is over
    archived: frozenset[str]  # class sourcedIds whose every enrollment is over
    # No enrollment runs: the summer before next year's roster; ended ones still count
    between_years: bool = False


def year_end(enrollments: Iterable[Enrollment], today: date) -> YearEnd:
    """Who has left and which classes are archived, from every enrollment of the directory."""
    by_person: dict[str, list[date | None]] = {}
    by_class: dict[str, list[date | None]] = {}
    for e in enrollments:
        by_person.setdefault(e.person_id, []).append(e.end_date)
        by_class.setdefault(e.class_id, []).append(e.end_date)
    if by_class and all(has_left(ends, today) for ends in by_class.values()):
        return YearEnd(left=frozenset(), archived=frozenset(), between_years=True)
    return YearEnd(
        left=frozenset(p for p, ends in by_person.items() if has_left(ends, today)),
        archived=frozenset(c for c, ends in by_class.items() if has_left(ends, today)),
    )


def enrollment_counts(enrollment: Enrollment, state: YearEnd, today: date) -> bool:
    """Whether the enrollment puts its person in its class's rooms: it is not over, or its
    class is archived (the archive keeps whoever was in the class at the end), or no
    enrollment runs (between two years); either way not for a person who has left."""
    if enrollment.person_id in state.left:
        return False
    return (
        state.between_years
        or enrollment.class_id in state.archived
        or not enrollment_over(enrollment.end_date, today)
    )
