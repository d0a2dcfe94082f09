"""OneRoster gradebook rows → the diary model, as pure functions any source can share.

Every OneRoster source must turn the same gradebook into the same marks and homework, so this
is the one mapping they all use. It works on plain rows, `Mapping[str, str]` keyed by the
OneRoster CSV column names (`lineItemSourcedId`, `studentSourcedId`, `classSourcedId`,
`categorySourcedId`, …): the CSV source passes its rows as read; the REST source flattens the
JSON objects into the same shape first (GUIDRefs become `…SourcedId` columns, numbers become
their text).

A problem's `where` is the row's `WHERE` entry (a key that is no OneRoster column: `results.csv:7`,
an item's URL), else its sourcedId. Every problem also names the column it is about; a source
whose rows have columns worth pointing at passes a `where` function that uses it, as the CSV
source does to say `results.csv:7:5`.

The mapping:
- a class's subject is its own `subjects`, else its course's, else (not for a homeroom, whose
  course is «Классное руководство») its course's title;
- a lineItem whose category title contains «домашн» or "homework" (any case) is Homework too:
  text = the description (the whole task), else the title; due = dueDate (required);
  assigned = assignDate. It stays a work that can be marked («оценка за домашнее задание»);
- a result is a Mark: value = textScore, else the score written without ".0"; work = the
  lineItem's title; category = the category's title; work_date = scoreDate, else the lineItem's
  assignDate; class = the lineItem's; subject = the class's;
- skipped with a problem: a repeated sourcedId or an empty required value, an unreadable date
  or number (`invalid`); a lineItem of an unknown class or category, a result of an unknown
  lineItem or of someone who is not a pupil (`unknown_reference`); a score outside
  resultValueMin..resultValueMax (`out_of_range`); a result with neither score nor textScore
  whose scoreStatus says it was marked (`invalid`). Results of a lineItem skipped for a problem
  are skipped quietly (its problem says why);
- rows whose status is `tobedeleted` are left out silently: they are deletions, not items.

Dates may be dates (`2026-11-23`) or date-times (`2026-11-23T09:00:00Z`); a date-time with a
zone is taken on the school's day in `timezone`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import date, datetime
from zoneinfo import ZoneInfo

import attrs

from bridges.diary.model import Homework, Mark, SourceProblem

Row = Mapping[str, str]
# Where a problem is: from the row and the name of the column the problem is about.
Where = Callable[[Row, str], str]
WHERE = "_where"
# The values each gradebook row needs, by collection (a CSV file is the same name + ".csv").
REQUIRED = {
    "categories": ("sourcedId", "title"),
    "lineItems": ("sourcedId", "title", "classSourcedId"),
    "results": ("sourcedId", "lineItemSourcedId", "studentSourcedId"),
}

HOMEWORK_WORDS = ("домашн", "homework")
# results.scoreStatus values under which an empty score just means "not marked yet".
UNMARKED = ("", "exempt", "not submitted", "submitted")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def is_homework_category(title: str) -> bool:
    folded = title.casefold()
    return any(word in folded for word in HOMEWORK_WORDS)


def parse_day(value: str, tz: ZoneInfo) -> date:
    """The school day of a OneRoster date or date-time; ValueError if it is neither."""
    try:
        if _ISO_DATE.fullmatch(value):
            return date.fromisoformat(value)
        moment = datetime.fromisoformat(value) if _ISO_DATE.match(value) else None
    except ValueError:
        moment = None
    if moment is None:
        raise ValueError(f"{value!r} is not a date such as 2026-11-23 or 2026-11-23T09:00:00Z")
    return (moment.astimezone(tz) if moment.tzinfo else moment).date()


def parse_number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a number such as 4 or 4.5")
    return number


def shown(number: float | None) -> str:
    """5.0 → "5", 4.5 → "4.5": a mark reads as a mark."""
    if number is None:
        return ""
    return str(int(number)) if number.is_integer() else repr(number)


def subjects_text(value: str) -> str:
    """A comma-separated `subjects` cell as shown: «Алгебра, Геометрия»."""
    parts = (part.strip() for part in value.split(","))
    return ", ".join(dict.fromkeys(part for part in parts if part))


def row_where(row: Row, column: str = "") -> str:
    """The row's `WHERE` entry, else its sourcedId; the column is not shown."""
    return row.get(WHERE) or row.get("sourcedId", "")


def class_subjects(classes: Iterable[Row], courses: Iterable[Row] = ()) -> dict[str, str]:
    """Each active class's subject: its own `subjects`, else its course's, else its course's
    title unless it is a homeroom."""
    by_course = {
        c["sourcedId"]: (subjects_text(c.get("subjects", "")), c.get("title", "").strip())
        for c in active(courses)
    }
    found = {}
    for c in active(classes):
        course_subjects, course_title = by_course.get(c.get("courseSourcedId", ""), ("", ""))
        homeroom = c.get("classType", "").strip().casefold() == "homeroom"
        found[c["sourcedId"]] = (
            subjects_text(c.get("subjects", ""))
            or course_subjects
            or ("" if homeroom else course_title)
        )
    return found


@attrs.frozen
class _Work:
    """A lineItem that gets marks."""

    title: str
    class_id: str
    category: str
    assigned: date | None
    low: float | None
    high: float | None

    def within(self, score: float) -> bool:
        above = self.low is None or score >= self.low
        return above and (self.high is None or score <= self.high)

    def bounds(self) -> str:
        return f"{shown(self.low) if self.low is not None else ''}..{shown(self.high)}"


@attrs.define
class _Reader:
    """Reads cells of rows, collecting problems (each at its row and column) as it goes."""

    source: str
    where: Where = row_where
    problems: list[SourceProblem] = attrs.field(factory=list)

    def report(self, row: Row, column: str, message: str, kind: str = "invalid") -> None:
        self.problems.append(SourceProblem(self.source, self.where(row, column), message, kind))

    def text(self, row: Row, column: str) -> str:
        return (row.get(column) or "").strip()

    def rows(self, rows: Iterable[Row], file: str, required: tuple[str, ...]) -> Iterator[Row]:
        """Active rows with their required values and a sourcedId not used before."""
        seen: dict[str, Row] = {}
        for row in active(rows):
            missing = [c for c in required if not self.text(row, c)]
            if missing:
                self.report(row, missing[0], f"{file}: {', '.join(missing)} is empty")
                continue
            key = self.text(row, "sourcedId")
            first = seen.setdefault(key, row)
            if first is not row:
                earlier = first.get(WHERE, "")
                at = f" at {earlier}" if earlier and earlier != row.get(WHERE) else ""
                self.report(row, "sourcedId", f"{file}: sourcedId {key!r} is already used{at}")
                continue
            yield row

    def convert(
        self, row: Row, column: str, parse: Callable[[str], float | date], bad: list[str]
    ) -> float | date | None:
        """The cell parsed, None if empty; a bad value is reported and its column added to
        `bad`."""
        value = self.text(row, column)
        if not value:
            return None
        try:
            return parse(value)
        except ValueError as err:
            self.report(row, column, f"{column} {err}")
            bad.append(column)
            return None


def active(rows: Iterable[Row]) -> list[Row]:
    """The rows but those whose status is `tobedeleted`."""
    return [r for r in rows if (r.get("status") or "").strip().casefold() != "tobedeleted"]


def items_from_gradebook(
    categories: Iterable[Row],
    line_items: Iterable[Row],
    results: Iterable[Row],
    pupils: Collection[str],
    source_name: str,
    subjects: Mapping[str, str] | None = None,
    timezone: str = "Europe/Moscow",
    *,
    where: Where = row_where,
) -> tuple[list[Mark], list[Homework], list[SourceProblem]]:
    """Marks, homework and problems of a gradebook. `pupils`: the roster's students'
    sourcedIds; `subjects`: each known class's subject (`class_subjects`), or None to check no
    class references and leave subjects empty; `where`: each problem's place, from its row and
    column."""
    reader = _Reader(source_name, where)
    tz = ZoneInfo(timezone)

    def day(value: str) -> date:
        return parse_day(value, tz)

    category_titles = {
        reader.text(c, "sourcedId"): reader.text(c, "title")
        for c in reader.rows(categories, "categories", REQUIRED["categories"])
    }
    works: dict[str, _Work] = {}
    homework: list[Homework] = []
    dropped: set[str] = set()
    for item in reader.rows(line_items, "lineItems", REQUIRED["lineItems"]):
        key = reader.text(item, "sourcedId")
        bad: list[str] = []
        assigned = reader.convert(item, "assignDate", day, bad)
        due = reader.convert(item, "dueDate", day, bad)
        low = reader.convert(item, "resultValueMin", parse_number, bad)
        high = reader.convert(item, "resultValueMax", parse_number, bad)
        class_id = reader.text(item, "classSourcedId")
        category_id = reader.text(item, "categorySourcedId")
        category = category_titles.get(category_id, "")
        if bad:
            dropped.add(key)
            continue
        if subjects is not None and class_id not in subjects:
            reader.report(
                item,
                "classSourcedId",
                f"lineItem {key!r}: classSourcedId {class_id!r} is not a class",
                "unknown_reference",
            )
            dropped.add(key)
            continue
        if category_id and category_id not in category_titles:
            reader.report(
                item,
                "categorySourcedId",
                f"lineItem {key!r}: categorySourcedId {category_id!r} is not a category",
                "unknown_reference",
            )
            dropped.add(key)
            continue
        if is_homework_category(category):
            if not isinstance(due, date):
                reader.report(
                    item,
                    "dueDate",
                    f"lineItem {key!r}: dueDate is empty; homework needs the day it is due",
                )
                dropped.add(key)
                continue
            homework.append(
                Homework(
                    source_id=key,
                    class_id=class_id,
                    subject=(subjects or {}).get(class_id, ""),
                    text=reader.text(item, "description") or reader.text(item, "title"),
                    due=due,
                    assigned=assigned if isinstance(assigned, date) else None,
                )
            )
        works[key] = _Work(
            title=reader.text(item, "title"),
            class_id=class_id,
            category=category,
            assigned=assigned if isinstance(assigned, date) else None,
            low=low if isinstance(low, float) else None,
            high=high if isinstance(high, float) else None,
        )

    marks: list[Mark] = []
    for result in reader.rows(results, "results", REQUIRED["results"]):
        key = reader.text(result, "sourcedId")
        bad = []
        score = reader.convert(result, "score", parse_number, bad)
        scored = reader.convert(result, "scoreDate", day, bad)
        work_id = reader.text(result, "lineItemSourcedId")
        pupil = reader.text(result, "studentSourcedId")
        text_score = reader.text(result, "textScore")
        if bad or work_id in dropped:
            continue
        work = works.get(work_id)
        if work is None:
            reader.report(
                result,
                "lineItemSourcedId",
                f"result {key!r}: lineItemSourcedId {work_id!r} is not a lineItem",
                "unknown_reference",
            )
            continue
        if pupil not in pupils:
            reader.report(
                result,
                "studentSourcedId",
                f"result {key!r}: studentSourcedId {pupil!r} is not a pupil in the roster",
                "unknown_reference",
            )
            continue
        number = score if isinstance(score, float) else None
        if number is not None and not work.within(number):
            reader.report(
                result,
                "score",
                f"result {key!r}: score {reader.text(result, 'score')} is outside "
                f"{work.bounds()} of lineItem {work_id!r}",
                "out_of_range",
            )
            continue
        if number is None and not text_score:
            if reader.text(result, "scoreStatus").casefold() not in UNMARKED:
                reader.report(
                    result,
                    "score",
                    f"result {key!r}: score is empty; a graded result needs it (or textScore)",
                )
            continue
        work_date = scored if isinstance(scored, date) else work.assigned
        if work_date is None:
            reader.report(
                result,
                "scoreDate",
                f"result {key!r}: scoreDate is empty and the lineItem has no assignDate",
            )
            continue
        marks.append(
            Mark(
                source_id=key,
                student_id=pupil,
                class_id=work.class_id,
                work=work.title,
                subject=(subjects or {}).get(work.class_id, ""),
                value=text_score or shown(number),
                work_date=work_date,
                comment=reader.text(result, "comment"),
                category=work.category,
            )
        )
    return marks, homework, reader.problems
