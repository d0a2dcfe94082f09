"""The normalised diary: what every source yields, whatever the diary system behind it.

Plain frozen data. Each item has a `key` that is stable across syncs and sources' restarts (the
source's own ID, prefixed with the item's kind), which the ledger maps to the Matrix event that
shows the item; any change of the item's other fields is an edit of that event.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

import attrs


@attrs.frozen
class Mark:
    """A pupil's mark for one piece of work (OneRoster: a result of a lineItem)."""

    source_id: str  # the result's sourcedId
    student_id: str  # roster sourcedId of the pupil
    class_id: str  # roster sourcedId of the class (homeroom or subject group)
    work: str  # the lineItem's title: «Контрольная работа №3»
    subject: str  # «Математика»; may be empty when the source does not say
    value: str  # as shown: "5", "4-", "зачёт", "н"; a numeric score is written without ".0"
    work_date: date  # when the work was done (assign date) or the mark given (score date)
    comment: str = ""
    category: str = ""  # «Контрольная работа», «Ответ на уроке»

    @property
    def key(self) -> str:
        return f"mark:{self.source_id}"


@attrs.frozen
class Homework:
    """Homework for a class or subject group, due on a day."""

    source_id: str
    class_id: str
    subject: str
    text: str
    due: date
    assigned: date | None = None

    @property
    def key(self) -> str:
        return f"homework:{self.source_id}"


class LessonStatus(enum.Enum):
    NORMAL = "normal"
    REPLACED = "replaced"  # another teacher, subject or room than the regular lesson
    CANCELLED = "cancelled"


@attrs.frozen
class Lesson:
    """One lesson on one day (a weekly series is expanded by the source)."""

    source_id: str  # stable per occurrence, e.g. the iCalendar UID plus the start
    class_id: str
    subject: str
    start: datetime  # timezone-aware
    end: datetime
    room: str = ""
    teacher: str = ""
    status: LessonStatus = LessonStatus.NORMAL
    note: str = ""  # why it changed: «замена: Петров А. Н.»

    @property
    def key(self) -> str:
        return f"lesson:{self.source_id}"


@attrs.frozen
class SourceProblem:
    """Bad input found by a source: said where, and skipped; good items still go through."""

    source: str  # the source's name, e.g. "oneroster-csv:/srv/diary"
    where: str  # file:line:column, a URL, a push request's ID
    message: str
    kind: str = "invalid"  # a metric label: invalid, unknown_reference, out_of_range, fetch


@attrs.frozen
class DiarySnapshot:
    """Everything a source knows now. Sources return whole snapshots; the bridge diffs them."""

    marks: tuple[Mark, ...] = ()
    homework: tuple[Homework, ...] = ()
    lessons: tuple[Lesson, ...] = ()
    problems: tuple[SourceProblem, ...] = ()
    # The OneRoster roster as a zip (for the module's admin API), when this source has one.
    roster_zip: bytes | None = attrs.field(default=None, repr=False)
    # Whether this snapshot is complete for marks/homework/lessons: an item missing from a
    # complete snapshot was deleted at the source (and is redacted); a failed fetch is not.
    complete: bool = True
