"""Marks and homework from a OneRoster 1.1 or 1.2 CSV export with its gradebook files.

The folder (or zip) is a complete OneRoster set: the roster (users, classes, courses, …) tells
who is a pupil and what a class teaches; the gradebook (categories, lineItems, results) holds
the works and their marks. A lineItem in a homework category («Домашнее задание», anything with
"домашн" or "homework") is homework to do, not a work to be marked. An optional `timetable.ics`
next to the CSVs adds the timetable (see `icalsource`).

The files are read as a full snapshot every time: `tobedeleted` rows are simply left out, which
is what a delta would do to the bridge's previous snapshot anyway. CSV syntax, UTF-8 and
column lookup by name are the shared roster reader's (`sferum_shared.roster`), so the same export
gets the same `file:line:column` messages from the module and from the bridge.
"""

from __future__ import annotations

import csv
import io
import zipfile
import zlib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import attrs

from bridges.diary.model import DiarySnapshot, Homework, Lesson, Mark, SourceProblem
from bridges.diary.sources import gradebook
from bridges.diary.sources.base import SourceUnavailable
from bridges.diary.sources.gradebook import Row
from bridges.diary.sources.icalsource import FileSource, lessons_from_ical
from sferum_shared.model import RosterError
from sferum_shared.roster.csvfiles import MAX_FILE_BYTES, decode, read_table
from sferum_shared.roster.problems import MAX_PER_FILE, Problems

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
# What reading a damaged zip member raises (encrypted, unknown compression, damaged data).
_UNREADABLE_MEMBER = (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same files always give the same roster zip


@attrs.frozen
class Gradebook:
    """What the CSV files say, before any timetable is added."""

    marks: tuple[Mark, ...]
    homework: tuple[Homework, ...]
    problems: tuple[SourceProblem, ...]
    complete: bool = True


class _Tables:
    """The CSV files as the plain rows `gradebook` maps: each row's values by column name, and
    its `file:line` under `gradebook.WHERE`. CSV syntax problems are collected in `syntax`."""

    def __init__(self, files: Mapping[str, bytes]):
        self._files = files
        self._columns: dict[str, Mapping[str, int]] = {}
        self.syntax = Problems()
        # False once a whole file could not be read: a snapshot without its items must not
        # make the bridge redact everything it posted from that file.
        self.complete = True

    def rows(self, file: str, required: tuple[str, ...]) -> list[Row]:
        """The rows of the file, none if it is absent or has no usable header."""
        data = self._files.get(file)
        if data is None:
            return []
        text = decode(file, data, self.syntax)
        table = None if text is None else read_table(file, text, required, self.syntax)
        if table is None:
            self.complete = False
            return []
        self._columns[file] = table.columns
        rows: list[Row] = []
        for row in table.rows(self.syntax):
            values = dict(zip(table.names, map(str.strip, row.fields), strict=True))
            values[gradebook.WHERE] = f"{file}:{row.line}"
            rows.append(values)
        return rows

    def gradebook_rows(self, collection: str) -> list[Row]:
        """The rows of a gradebook file: `categories` → categories.csv."""
        return self.rows(f"{collection}.csv", gradebook.REQUIRED[collection])

    def where(self, row: Row, column: str) -> str:
        """`file:line:column` of the row's value in `column` (column 0 if the file has none)."""
        file, _, _ = row[gradebook.WHERE].rpartition(":")
        return f"{row[gradebook.WHERE]}:{self._columns[file].get(column, 0)}"

    def syntax_problems(self, source: str) -> list[SourceProblem]:
        try:
            self.syntax.raise_if_any()
        except RosterError as err:
            return [
                SourceProblem(source, f"{p.file}:{p.line}:{p.column}", p.message, "invalid")
                for p in err.problems
            ]
        return []


def parse_gradebook(files: Mapping[str, bytes], source: str, timezone: str) -> Gradebook:
    """Marks and homework from the files (by name); bad rows become problems and are skipped."""
    tables = _Tables(files)
    subjects = gradebook.class_subjects(
        tables.rows("classes.csv", ("sourcedId",)), tables.rows("courses.csv", ("sourcedId",))
    )
    results: list[Row] = []
    missing: list[SourceProblem] = []
    if "users.csv" in files:
        results = tables.gradebook_rows("results")
    elif "results.csv" in files:
        message = "is missing, so no mark can be given to a pupil"
        missing.append(SourceProblem(source, "users.csv:0:0", message, "invalid"))
        tables.complete = False
    marks, homework, found = gradebook.items_from_gradebook(
        tables.gradebook_rows("categories"),
        tables.gradebook_rows("lineItems"),
        results,
        _pupils(tables),
        source,
        subjects,
        timezone,
        where=tables.where,
    )
    problems = [*_capped(found), *tables.syntax_problems(source), *missing]
    problems.sort(key=lambda p: _location(p.where))
    return Gradebook(tuple(marks), tuple(homework), tuple(problems), tables.complete)


def _pupils(tables: _Tables) -> set[str]:
    """Users with the student role: users.role in 1.1, roles.csv in 1.2."""

    def students(rows: list[Row], key: str) -> set[str]:
        active = gradebook.active(rows)
        return {r[key] for r in active if r.get("role", "").casefold() == "student"}

    users = students(tables.rows("users.csv", ("sourcedId",)), "sourcedId")
    return users | students(tables.rows("roles.csv", ("userSourcedId", "role")), "userSourcedId")


def _capped(problems: list[SourceProblem]) -> list[SourceProblem]:
    """At most `MAX_PER_FILE` problems a file, like the roster's: a results.csv from another
    school would otherwise give one problem per row."""
    per_file: Counter[str] = Counter()
    kept = []
    for problem in problems:
        file = _location(problem.where)[0]
        per_file[file] += 1
        if per_file[file] <= MAX_PER_FILE:
            kept.append(problem)
        elif per_file[file] == MAX_PER_FILE + 1:
            more = f"more than {MAX_PER_FILE} such problems; the rest are not listed"
            kept.append(attrs.evolve(problem, where=f"{file}:0:0", message=more))
    return kept


def _location(where: str) -> tuple[str, int, int]:
    """`file:line:column` → (file, line, column)."""
    file, line, column = where.rsplit(":", 2)
    return file, int(line), int(column)


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


class OneRosterCsvSource(FileSource):
    """`oneroster-csv:PATH`: a OneRoster folder or zip with the gradebook, and maybe a timetable.

    The timetable covers this week's Monday to `days_ahead` days on.
    """

    def _read(self) -> DiarySnapshot:
        files = read_files(self._path)
        book = parse_gradebook(files, self._name, self._timezone)
        lessons: list[Lesson] = []
        problems = list(book.problems)
        complete = book.complete
        if TIMETABLE_FILE in files:
            start, end = self._window()
            lessons, timetable_problems = lessons_from_ical(
                files[TIMETABLE_FILE], self._name, start, end, self._timezone, TIMETABLE_FILE
            )
            problems += timetable_problems
            complete = complete and not any(p.where.endswith(":0:0") for p in timetable_problems)
        return DiarySnapshot(
            marks=book.marks,
            homework=book.homework,
            lessons=tuple(lessons),
            problems=tuple(problems),
            roster_zip=roster_zip(files),
            complete=complete,
        )
