"""Marks and homework from a OneRoster 1.1 or 1.2 CSV export with its gradebook files.

The folder (or zip) is a complete OneRoster set: the roster (users, classes, courses, …) tells
who is a pupil and what a class teaches; the gradebook (categories, lineItems, results) holds
the works and their marks. A lineItem in a homework category («Домашнее задание», anything with
"домашн" or "homework") is homework to do, not a work to be marked. An optional `timetable.ics`
next to the CSVs adds the timetable (see `icalsource`).

The files are read as a full snapshot every time: `tobedeleted` rows are simply left out, which
is what a delta would do to the bridge's previous snapshot anyway. CSV syntax, UTF-8 and
column lookup by name are the roster parser's (`synapse_sferum.roster`), so the same export
gets the same `file:line:column` messages from the module and from the bridge.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import attrs

from bridges.diary.model import DiarySnapshot, Homework, Lesson, Mark, SourceProblem
from bridges.diary.sources.base import SourceUnavailable
from bridges.diary.sources.icalsource import lessons_from_ical, timetable_window
from synapse_sferum.model import RosterError
from synapse_sferum.roster import fields
from synapse_sferum.roster.csvfiles import MAX_FILE_BYTES, decode, read_table
from synapse_sferum.roster.fields import Cells
from synapse_sferum.roster.problems import MAX_PER_FILE, Problems

# The gradebook part of OneRoster 1.1 and 1.2: kept out of the roster zip sent to the module.
GRADEBOOK_FILES = (
    "categories.csv",
    "lineItems.csv",
    "results.csv",
    "scoreScales.csv",
    "lineItemScoreScales.csv",
    "resultScoreScales.csv",
    "lineItemLearningObjectiveIds.csv",
    "resultLearningObjectiveIds.csv",
)
TIMETABLE_FILE = "timetable.ics"
HOMEWORK_WORDS = ("домашн", "homework")
# results.scoreStatus values under which an empty score just means "not marked yet".
_UNMARKED = ("", "exempt", "not submitted", "submitted")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# What reading a damaged zip member raises (encrypted, unknown compression, damaged data).
_UNREADABLE_MEMBER = (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same files always give the same roster zip
_NEVER = object()  # no snapshot yet: `changed()` is True even if the path is missing


@attrs.frozen
class _Class:
    subject: str


@attrs.frozen
class _Work:
    """A lineItem that gets marks."""

    title: str
    class_id: str
    category: str
    assigned: date | None
    low: float | None
    high: float | None


@attrs.frozen
class Gradebook:
    """What the CSV files say, before any timetable is added."""

    marks: tuple[Mark, ...]
    homework: tuple[Homework, ...]
    problems: tuple[SourceProblem, ...]
    complete: bool = True


class _Found:
    """Problems of both sorts: syntax and values via the roster's `Problems` (kind invalid,
    capped per file), references and ranges here, each with its kind."""

    def __init__(self, source: str):
        self.source = source
        self.invalid = Problems()
        # False once a whole file could not be read: a snapshot without its items must not
        # make the bridge redact everything it posted from that file.
        self.complete = True
        self._other: list[tuple[str, int, int, str, str]] = []
        self._per_file: Counter[str] = Counter()

    def add(self, kind: str, cells: Cells, file: str, column: str, message: str) -> None:
        """Capped per file like the roster's problems: a results.csv from another school
        would otherwise give one problem per row."""
        self._per_file[file] += 1
        count = self._per_file[file]
        if count <= MAX_PER_FILE:
            self._other.append((file, cells.line, cells.column(column), message, kind))
        elif count == MAX_PER_FILE + 1:
            more = f"more than {MAX_PER_FILE} such problems; the rest are not listed"
            self._other.append((file, 0, 0, more, kind))

    def all(self) -> tuple[SourceProblem, ...]:
        found = list(self._other)
        try:
            self.invalid.raise_if_any()
        except RosterError as err:
            found += [(p.file, p.line, p.column, p.message, "invalid") for p in err.problems]
        found.sort(key=lambda p: p[:3])
        return tuple(
            SourceProblem(self.source, f"{file}:{line}:{column}", message, kind)
            for file, line, column, message, kind in found
        )


def parse_gradebook(files: Mapping[str, bytes], source: str, timezone: str) -> Gradebook:
    """Marks and homework from the files (by name); bad rows become problems and are skipped."""
    found = _Found(source)
    tz = ZoneInfo(timezone)
    pupils = _pupils(files, found)
    classes = _classes(files, found)
    categories = {
        key: cells.text("title")
        for key, cells in _rows(files, "categories.csv", ("sourcedId", "title"), found)
    }
    works, homework, dropped = _line_items(files, classes, categories, tz, found)
    if "users.csv" in files:
        marks = _results(files, pupils, works, dropped, classes, tz, found)
    else:
        marks = []
        if "results.csv" in files:
            found.invalid.add("users.csv", 0, 0, "is missing, so no mark can be given to a pupil")
            found.complete = False
    return Gradebook(tuple(marks), tuple(homework), found.all(), found.complete)


def _rows(
    files: Mapping[str, bytes], file: str, required: tuple[str, ...], found: _Found
) -> Iterator[tuple[str, Cells]]:
    """Active rows with their sourcedId; a repeated sourcedId or an empty required value is
    reported and the row skipped. Nothing if the file is absent."""
    data = files.get(file)
    if data is None:
        return
    text = decode(file, data, found.invalid)
    table = None if text is None else read_table(file, text, required, found.invalid)
    if table is None:
        found.complete = False
        return
    first_lines: dict[str, int] = {}
    for row in table.rows(found.invalid):
        cells = Cells(table, row, found.invalid)
        if cells.text("status").casefold() == "tobedeleted":
            continue
        key = cells.text(required[0])
        if not cells.require(required):
            continue
        if required[0] == "sourcedId":
            first = first_lines.setdefault(key, row.line)
            if first != row.line:
                cells.report("sourcedId", f"sourcedId {key!r} is already used on line {first}")
                continue
        yield key, cells


def _pupils(files: Mapping[str, bytes], found: _Found) -> set[str]:
    """Users with the student role: users.role in 1.1, roles.csv in 1.2."""
    pupils = {
        key
        for key, cells in _rows(files, "users.csv", ("sourcedId",), found)
        if cells.text("role").casefold() == "student"
    }
    roles = _rows(files, "roles.csv", ("userSourcedId", "role"), found)
    pupils.update(key for key, cells in roles if cells.text("role").casefold() == "student")
    return pupils


def _classes(files: Mapping[str, bytes], found: _Found) -> dict[str, _Class]:
    """Each class with its subject: its own `subjects`, else its course's; a subject group's
    course title names its subject too, a homeroom's («Классное руководство») does not."""
    courses = {
        key: (_subjects(cells.text("subjects")), cells.text("title"))
        for key, cells in _rows(files, "courses.csv", ("sourcedId",), found)
    }
    classes = {}
    for key, cells in _rows(files, "classes.csv", ("sourcedId",), found):
        course_subjects, course_title = courses.get(cells.text("courseSourcedId"), ("", ""))
        homeroom = cells.text("classType").casefold() == "homeroom"
        subject = (
            _subjects(cells.text("subjects"))
            or course_subjects
            or ("" if homeroom else course_title)
        )
        classes[key] = _Class(subject)
    return classes


def _subjects(value: str) -> str:
    return ", ".join(fields.id_list(value))


def is_homework(category: str) -> bool:
    folded = category.casefold()
    return any(word in folded for word in HOMEWORK_WORDS)


def _line_items(
    files: Mapping[str, bytes],
    classes: Mapping[str, _Class],
    categories: Mapping[str, str],
    tz: ZoneInfo,
    found: _Found,
) -> tuple[dict[str, _Work], list[Homework], set[str]]:
    """Works to mark, homework, and the IDs of lineItems skipped for a problem (their results
    are skipped quietly: the lineItem's problem already says why)."""
    file = "lineItems.csv"
    works: dict[str, _Work] = {}
    homework: list[Homework] = []
    dropped: set[str] = set()
    for key, cells in _rows(files, file, ("sourcedId", "title", "classSourcedId"), found):
        assigned = cells.convert("assignDate", _day(tz), None)
        due = cells.convert("dueDate", _day(tz), None)
        low = cells.convert("resultValueMin", _number, None)
        high = cells.convert("resultValueMax", _number, None)
        class_id = cells.text("classSourcedId")
        category_id = cells.text("categorySourcedId")
        category = categories.get(category_id, "")
        if not cells.ok:
            dropped.add(key)
        elif class_id not in classes:
            found.add("unknown_reference", cells, file, "classSourcedId",
                      f"classSourcedId {class_id!r} is not in classes.csv")  # fmt: skip
            dropped.add(key)
        elif category_id and category_id not in categories:
            found.add("unknown_reference", cells, file, "categorySourcedId",
                      f"categorySourcedId {category_id!r} is not in categories.csv")  # fmt: skip
            dropped.add(key)
        elif is_homework(category):
            if due is None:
                cells.report("dueDate", "dueDate is empty; homework needs the day it is due")
                dropped.add(key)
                continue
            homework.append(
                Homework(
                    source_id=key,
                    class_id=class_id,
                    subject=classes[class_id].subject,
                    text=cells.text("description") or cells.text("title"),
                    due=due,
                    assigned=assigned,
                )
            )
        if key not in dropped:
            # Homework may be marked too («оценка за домашнее задание»): keep it as a work.
            title = cells.text("title")
            works[key] = _Work(title, class_id, category, assigned, low, high)
    return works, homework, dropped


def _results(
    files: Mapping[str, bytes],
    pupils: set[str],
    works: Mapping[str, _Work],
    dropped: set[str],
    classes: Mapping[str, _Class],
    tz: ZoneInfo,
    found: _Found,
) -> list[Mark]:
    file = "results.csv"
    marks: list[Mark] = []
    required = ("sourcedId", "lineItemSourcedId", "studentSourcedId")
    for key, cells in _rows(files, file, required, found):
        score = cells.convert("score", _number, None)
        scored = cells.convert("scoreDate", _day(tz), None)
        work_id = cells.text("lineItemSourcedId")
        pupil = cells.text("studentSourcedId")
        text_score = cells.text("textScore")
        if not cells.ok or work_id in dropped:
            continue
        work = works.get(work_id)
        if work is None:
            found.add("unknown_reference", cells, file, "lineItemSourcedId",
                      f"lineItemSourcedId {work_id!r} is not in lineItems.csv")  # fmt: skip
            continue
        if pupil not in pupils:
            found.add("unknown_reference", cells, file, "studentSourcedId",
                      f"studentSourcedId {pupil!r} is not a pupil in the roster")  # fmt: skip
            continue
        if score is not None and not _within(score, work):
            found.add("out_of_range", cells, file, "score",
                      f"score {cells.text('score')} is outside {_bounds(work)} "
                      f"of lineItem {work_id!r}")  # fmt: skip
            continue
        if score is None and not text_score:
            if cells.text("scoreStatus").casefold() not in _UNMARKED:
                cells.report("score", "score is empty; a graded result needs it (or textScore)")
            continue
        work_date = scored or work.assigned
        if work_date is None:
            cells.report("scoreDate", "scoreDate is empty and the lineItem has no assignDate")
            continue
        marks.append(
            Mark(
                source_id=key,
                student_id=pupil,
                class_id=work.class_id,
                work=work.title,
                subject=classes[work.class_id].subject,
                value=text_score or _shown(score),
                work_date=work_date,
                comment=cells.text("comment"),
                category=work.category,
            )
        )
    return marks


def _day(tz: ZoneInfo) -> Callable[[str], date]:
    """OneRoster writes dates (`2026-11-23`) or date-times (`2026-11-23T09:00:00Z`); a time with
    a zone is taken on the school's day."""

    def parse(value: str) -> date:
        try:
            if _ISO_DATE.fullmatch(value):
                return date.fromisoformat(value)
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is None or not _ISO_DATE.match(value):
            raise ValueError(f"{value!r} is not a date such as 2026-11-23 or 2026-11-23T09:00:00Z")
        return (moment.astimezone(tz) if moment.tzinfo else moment).date()

    return parse


def _number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a number such as 4 or 4.5")
    return number


def _within(score: float, work: _Work) -> bool:
    return (work.low is None or score >= work.low) and (work.high is None or score <= work.high)


def _bounds(work: _Work) -> str:
    return f"{_shown(work.low) if work.low is not None else ''}..{_shown(work.high)}"


def _shown(number: float | None) -> str:
    """5.0 → "5", 4.5 → "4.5": a mark reads as a mark."""
    if number is None:
        return ""
    return str(int(number)) if number.is_integer() else repr(number)


def roster_zip(files: Mapping[str, bytes]) -> bytes | None:
    """The roster part as a zip the module's admin API takes: every CSV but the gradebook,
    with the manifest's gradebook entries set to `absent`. None without a users.csv."""
    if "users.csv" not in files:
        return None
    gradebook = {name.casefold() for name in GRADEBOOK_FILES}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            if not name.endswith(".csv") or name.casefold() in gradebook:
                continue
            data = files[name]
            if name == "manifest.csv":
                data = _roster_manifest(data, gradebook)
            archive.writestr(zipfile.ZipInfo(name, _ZIP_TIME), data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _roster_manifest(data: bytes, gradebook: set[str]) -> bytes:
    try:
        text = data.decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except (UnicodeDecodeError, csv.Error):
        return data  # the module says what is wrong with it
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        if len(row) == 2 and f"{row[0].strip().removeprefix('file.')}.csv".casefold() in gradebook:
            row = [row[0], "absent"]
        writer.writerow(row)
    return out.getvalue().encode()


def read_files(path: Path) -> dict[str, bytes]:
    """The files at the top of the folder or zip (or of the zip's only folder), by name.

    Names are as written, except that a known OneRoster name in another case (`lineitems.csv`)
    gets the spec's spelling. Raises `SourceUnavailable` if nothing can be read.
    """
    try:
        if path.is_dir():
            raw = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
        else:
            raw = _read_zip(path.read_bytes(), path.name)
    except OSError as err:
        raise SourceUnavailable(f"cannot read {path} ({err})") from err
    known = {name.casefold(): name for name in (*GRADEBOOK_FILES, TIMETABLE_FILE)}
    return {known.get(name.casefold(), name): data for name, data in raw.items()}


def _read_zip(data: bytes, name: str) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as err:
        raise SourceUnavailable(f"{name} is not a readable zip file ({err})") from err
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        folders = {info.filename.rpartition("/")[0] for info in members}
        top = "" if "" in folders or len(folders) != 1 else folders.pop()
        files = {}
        for info in members:
            folder, _, base = info.filename.rpartition("/")
            if folder != top:
                continue
            if info.file_size > MAX_FILE_BYTES:
                raise SourceUnavailable(f"{name}: {info.filename} is larger than the limit")
            try:
                files[base] = archive.read(info)
            except _UNREADABLE_MEMBER as err:
                raise SourceUnavailable(f"{name}: cannot read {info.filename} ({err})") from err
    return files


class OneRosterCsvSource:
    """`oneroster-csv:PATH`: a OneRoster folder or zip with the gradebook, and maybe a timetable.

    `today` is for tests; the timetable covers this week's Monday to `days_ahead` days on.
    """

    def __init__(
        self,
        path: Path,
        name: str,
        timezone: str = "Europe/Moscow",
        days_ahead: int = 14,
        today: Callable[[], date] | None = None,
    ):
        self._path = path
        self._name = name
        self._timezone = timezone
        self._days_ahead = days_ahead
        self._today = today or (lambda: datetime.now(ZoneInfo(timezone)).date())
        self._seen: object = _NEVER

    @property
    def name(self) -> str:
        return self._name

    async def snapshot(self) -> DiarySnapshot:
        return await asyncio.to_thread(self._read)

    async def changed(self) -> bool:
        return await asyncio.to_thread(lambda: self._stat() != self._seen)

    def _stat(self) -> tuple[tuple[str, int, int], ...] | None:
        """(name, mtime, size) of the zip or of each file in the folder; None if missing."""
        try:
            paths = sorted(self._path.iterdir()) if self._path.is_dir() else [self._path]
            stats = [(p.name, p.stat()) for p in paths]
        except OSError:
            return None
        return tuple((name, s.st_mtime_ns, s.st_size) for name, s in stats)

    def _read(self) -> DiarySnapshot:
        seen = self._stat()  # before reading: a change while we read shows up next time
        if seen is None:
            raise SourceUnavailable(f"{self._name}: {self._path} does not exist")
        files = read_files(self._path)
        book = parse_gradebook(files, self._name, self._timezone)
        lessons: list[Lesson] = []
        problems = list(book.problems)
        complete = book.complete
        if TIMETABLE_FILE in files:
            start, end = timetable_window(self._today(), self._days_ahead)
            lessons, timetable_problems = lessons_from_ical(
                files[TIMETABLE_FILE], self._name, start, end, self._timezone, TIMETABLE_FILE
            )
            problems += timetable_problems
            complete = complete and not any(p.where.endswith(":0:0") for p in timetable_problems)
        self._seen = seen
        return DiarySnapshot(
            marks=book.marks,
            homework=book.homework,
            lessons=tuple(lessons),
            problems=tuple(problems),
            roster_zip=roster_zip(files),
            complete=complete,
        )
