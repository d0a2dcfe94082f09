"""The OneRoster CSV diary source: the demo set, each kind of bad input, zip vs folder."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from bridges.diary.model import Homework, LessonStatus, Mark
from bridges.diary.sources.base import SourceUnavailable
from bridges.diary.sources.csvsource import (
    Gradebook,
    OneRosterCsvSource,
    parse_gradebook,
    roster_zip,
)
from sferum_shared import Clock
from sferum_shared.model import ImportMode
from synapse_sferum.ctl.demo import DemoCalendar
from synapse_sferum.roster.oneroster import parse_roster_zip
from tests.demo import DIARY, demo_folder
from tests.demo import demo_files as demo_files_of

SOURCE = "oneroster-csv:test"
TODAY = date(2026, 11, 22)  # a Sunday: the window runs from 16 November to 6 December
CLOCK = Clock.fixed(datetime(2026, 11, 22, 12, 0, tzinfo=UTC))
DAY = DemoCalendar(TODAY).school_day  # the demo's dates: DAY(-1) is Friday 20 November
DEMO = demo_folder(DIARY, TODAY)
Files = dict[str, bytes]


def demo_files() -> Files:
    return demo_files_of(DIARY, TODAY)


def parse(files: Files) -> Gradebook:
    return parse_gradebook(files, SOURCE, "Europe/Moscow")


def edit(file: str, old: str, new: str) -> Callable[[Files], None]:
    """Replaces the one occurrence of `old` in `file`."""

    def apply(files: Files) -> None:
        text = files[file].decode()
        assert text.count(old) == 1, old
        files[file] = text.replace(old, new).encode()

    return apply


def test_the_demo_gradebook() -> None:
    book = parse(demo_files())
    assert book.problems == ()
    assert len(book.marks) == 18  # 4 + 4 pupils in 5А, 4 + 4 in 6Б, 2 in the English group
    assert {mark.class_id for mark in book.marks} == {"5a", "6b", "5a-eng1"}
    assert book.marks[2] == Mark(
        source_id="r-5a-math-kr2-3",
        student_id="p-5a-3",
        class_id="5a",
        work="Контрольная работа по математике №2",
        subject="",  # a homeroom's course («Классное руководство») names no subject
        value="3",
        work_date=DAY(-6),
        comment="Ошибки в приведении к общему знаменателю",
        category="Контрольная работа",
    )
    english = {mark.source_id: mark for mark in book.marks}["r-5a-eng1-vocab-2"]
    assert (english.value, english.subject) == ("4", "Английский язык")  # "4.0" in the file
    answer = {mark.source_id: mark for mark in book.marks}["r-6b-math-answer-1"]
    assert answer.work_date == DAY(-5)  # no scoreDate: the lineItem's assignDate
    assert book.homework == (
        Homework("li-5a-hw", "5a", "", "Математика: §12, упр. 3–5", DAY(1), DAY(-1)),
        Homework("li-6b-hw", "6b", "", "История: §8, вопросы 1–4 на с. 45", DAY(2), DAY(-1)),
        Homework("li-5a-eng1-hw", "5a-eng1", "Английский язык", "Workbook p. 24, ex. 1–3",
                 DAY(1), DAY(-1)),
    )  # fmt: skip


ROW_2 = f"r-5a-math-kr2-1,,,li-5a-math-kr2,p-5a-1,fully graded,5,{DAY(-6)},"
LINE_ITEM_2 = "li-5a-math-kr2,,,Контрольная работа по математике №2,"


@pytest.mark.parametrize(
    ("change", "kind", "where", "message", "marks", "homework"),
    [
        pytest.param(
            edit("results.csv", ROW_2, ROW_2.replace(",5,", ",пять,")),
            "invalid", "results.csv:2:7", "score 'пять' is not a number", 17, 3,
            id="bad-score",
        ),
        pytest.param(
            edit("results.csv", ROW_2, ROW_2.replace("p-5a-1", "p-9z-9")),
            "unknown_reference", "results.csv:2:5", "'p-9z-9' is not a pupil", 17, 3,
            id="unknown-pupil",
        ),
        pytest.param(
            edit("results.csv", ROW_2, ROW_2.replace(",p-5a-1,", ",t-1,")),
            "unknown_reference", "results.csv:2:5", "'t-1' is not a pupil", 17, 3,
            id="a-teacher-is-no-pupil",
        ),
        pytest.param(
            edit("results.csv", ROW_2, ROW_2.replace("li-5a-math-kr2", "li-nope")),
            "unknown_reference", "results.csv:2:4", "'li-nope' is not a lineItem", 17, 3,
            id="unknown-line-item",
        ),
        pytest.param(
            edit("results.csv", ROW_2, ROW_2.replace(",5,", ",7,")),
            "out_of_range", "results.csv:2:7", "score 7 is outside 1..5", 17, 3,
            id="out-of-range",
        ),
        pytest.param(
            edit("results.csv", ROW_2, ROW_2.replace(str(DAY(-6)), f"{DAY(-6):%d.%m.%Y}")),
            "invalid", "results.csv:2:8", f"scoreDate '{DAY(-6):%d.%m.%Y}' is not a date", 17, 3,
            id="malformed-date",
        ),
        pytest.param(
            edit("results.csv", ROW_2, ROW_2 + ",extra"),
            "invalid", "results.csv:2:0", "has 10 fields but the header has 9", 17, 3,
            id="malformed-row",
        ),
        pytest.param(
            edit("results.csv", ROW_2, ROW_2.replace("fully graded,5,", "fully graded,,")),
            "invalid", "results.csv:2:7", "score is empty", 17, 3,
            id="graded-without-score",
        ),
        pytest.param(
            edit("results.csv", "r-5a-math-kr2-2,", "r-5a-math-kr2-1,"),
            "invalid", "results.csv:3:1", "'r-5a-math-kr2-1' is already used at results.csv:2",
            17, 3,
            id="repeated-id",
        ),
        pytest.param(
            edit("results.csv", "lineItemSourcedId,studentSourcedId,",
                 "lineItemSourcedId,pupilSourcedId,"),
            "invalid", "results.csv:1:0", "has no column 'studentSourcedId'", 0, 3,
            id="missing-column",
        ),
        pytest.param(
            edit("lineItems.csv", LINE_ITEM_2 + f'"Дроби, сложение и вычитание",{DAY(-8)}',
                 LINE_ITEM_2 + f'"Дроби, сложение и вычитание",{DAY(-8):%d/%m/%Y}'),
            "invalid", "lineItems.csv:2:6", f"assignDate '{DAY(-8):%d/%m/%Y}' is not a date", 14,
            3,
            id="line-item-date",  # and its four results are skipped without more problems
        ),
        pytest.param(
            edit("lineItems.csv", f"{DAY(-8)},5a,cat-test", f"{DAY(-8)},7z,cat-test"),
            "unknown_reference", "lineItems.csv:2:8", "classSourcedId '7z'", 14, 3,
            id="unknown-class",
        ),
        pytest.param(
            edit("lineItems.csv", f"{DAY(-8)},5a,cat-test", f"{DAY(-8)},5a,cat-nope"),
            "unknown_reference", "lineItems.csv:2:9", "categorySourcedId 'cat-nope'", 14, 3,
            id="unknown-category",
        ),
        pytest.param(
            edit("lineItems.csv", f"{DAY(-1)},{DAY(1)},5a,cat-homework",
                 f"{DAY(-1)},,5a,cat-homework"),
            "invalid", "lineItems.csv:4:7", "dueDate is empty", 18, 2,
            id="homework-without-due-date",
        ),
    ],
)  # fmt: skip
def test_bad_input_is_one_problem_and_the_rest_goes_through(
    change: Callable[[Files], None],
    kind: str,
    where: str,
    message: str,
    marks: int,
    homework: int,
) -> None:
    files = demo_files()
    change(files)
    book = parse(files)
    first = book.problems[0]
    assert (first.source, first.where, first.kind) == (SOURCE, where, kind)
    assert message in first.message
    assert len(book.problems) == 1, book.problems
    assert (len(book.marks), len(book.homework)) == (marks, homework)
    # A file that cannot be read at all must not read as "every mark in it was deleted".
    assert book.complete is (where.split(":")[1] != "1")


def test_a_category_without_a_title_also_orphans_its_line_items() -> None:
    files = demo_files()
    edit("categories.csv", "cat-test,,,Контрольная работа", "cat-test,,,")(files)
    assert [(p.where, p.kind) for p in parse(files).problems] == [
        ("categories.csv:2:4", "invalid"),
        ("lineItems.csv:2:9", "unknown_reference"),
        ("lineItems.csv:5:9", "unknown_reference"),
    ]


def test_without_users_no_mark_is_given() -> None:
    files = demo_files()
    del files["users.csv"]
    book = parse(files)
    assert [(p.where, p.kind) for p in book.problems] == [("users.csv:0:0", "invalid")]
    assert (len(book.marks), len(book.homework)) == (0, 3)
    assert not book.complete


def test_reference_problems_are_capped_per_file() -> None:
    files = demo_files()
    header = files["results.csv"].decode().splitlines()[0]
    rows = [f"r-{n},,,li-5a-math-kr2,p-{n},fully graded,5,2026-11-18," for n in range(150)]
    files["results.csv"] = "\n".join([header, *rows]).encode()
    problems = parse(files).problems
    assert len(problems) == 101
    assert problems[0].where == "results.csv:0:0"
    assert "more than 100" in problems[0].message


@pytest.mark.parametrize(
    ("row", "values"),
    [
        pytest.param("tobedeleted,,li-5a-math-kr2,p-5a-1,fully graded,5", [], id="deleted"),
        pytest.param(",,li-5a-math-kr2,p-5a-1,not submitted,", [], id="not-submitted"),
        pytest.param(",,li-5a-math-kr2,p-5a-1,fully graded,4.5", ["4.5"], id="fraction"),
        pytest.param(",,li-5a-math-kr2,p-5a-1,fully graded,4.0", ["4"], id="no-trailing-zero"),
    ],
)
def test_result_rows(row: str, values: list[str]) -> None:
    files = demo_files()
    header = files["results.csv"].decode().splitlines()[0]
    files["results.csv"] = f"{header}\nr-1,{row},2026-11-18,\n".encode()
    book = parse(files)
    assert book.problems == ()
    assert [mark.value for mark in book.marks] == values


def test_oneroster_1_2_text_scores_and_extra_columns() -> None:
    files = demo_files()
    files["results.csv"] = (
        b"sourcedId,status,dateLastModified,lineItemSourcedId,studentSourcedId,classSourcedId,"
        b"scoreScaleSourcedId,scoreStatus,score,textScore,scoreDate,comment,inProgress\n"
        b"r-1,active,2026-11-18T10:00:00Z,li-5a-math-kr2,p-5a-1,5a,,fully graded,,5-,"
        b"2026-11-17T22:30:00Z,,false\n"
        b"r-2,active,2026-11-18T10:00:00Z,li-5a-math-kr2,p-5a-2,5a,,fully graded,4,4+,"
        b"2026-11-18,,false\n"
    )
    files["categories.csv"] = (
        "sourcedId,status,dateLastModified,title,weight\n"
        "cat-test,active,2026-09-01T00:00:00Z,Контрольная работа,2\n"
        "cat-homework,active,2026-09-01T00:00:00Z,Homework,0\n"
    ).encode()
    book = parse(files)
    # The demo's other categories are gone from categories.csv now: their lineItems say so.
    assert [p.where for p in book.problems] == ["lineItems.csv:3:9", "lineItems.csv:6:9",
                                                "lineItems.csv:8:9"]  # fmt: skip
    # 22:30 UTC on the 17th is the 18th in Moscow.
    assert [(m.value, m.work_date) for m in book.marks] == [
        ("5-", date(2026, 11, 18)),
        ("4+", date(2026, 11, 18)),
    ]
    assert len(book.homework) == 3  # "Homework" is a homework category too


def write_folder(folder: Path, files: Files) -> None:
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)


def write_zip(path: Path, files: Files, prefix: str = "") -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(prefix + name, data)


async def test_the_demo_source_with_its_timetable() -> None:
    snapshot = await OneRosterCsvSource(DEMO, SOURCE, clock=CLOCK).snapshot()
    assert snapshot.problems == ()
    assert (len(snapshot.marks), len(snapshot.homework)) == (18, 3)
    assert len(snapshot.lessons) == 60  # three weeks of 20 lessons
    statuses = [lesson.status for lesson in snapshot.lessons]
    assert statuses.count(LessonStatus.REPLACED) == statuses.count(LessonStatus.CANCELLED) == 1
    assert snapshot.complete


async def test_zip_and_folder_give_the_same_snapshot(tmp_path: Path) -> None:
    files = demo_files()
    edit("results.csv", ROW_2, ROW_2.replace(",5,", ",7,"))(files)  # problems must match too
    write_folder(tmp_path / "folder", files)
    write_zip(tmp_path / "flat.zip", files)
    write_zip(tmp_path / "nested.zip", files, prefix="export-2026-11-22/")
    snapshots = [
        await OneRosterCsvSource(tmp_path / name, SOURCE, clock=CLOCK).snapshot()
        for name in ("folder", "flat.zip", "nested.zip")
    ]
    assert len(snapshots[0].problems) == 1
    assert snapshots[0] == snapshots[1] == snapshots[2]
    assert snapshots[0].roster_zip == snapshots[1].roster_zip


def test_the_roster_zip_is_what_the_module_accepts() -> None:
    data = roster_zip(demo_files())
    assert data is not None
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        manifest = archive.read("manifest.csv").decode()
    assert "results.csv" not in names and "lineItems.csv" not in names
    assert "timetable.ics" not in names and "users.csv" in names
    assert "file.results,absent" in manifest and "file.users,bulk" in manifest
    roster = parse_roster_zip(data, TODAY, "diary-roster.zip")
    assert roster.people.mode is ImportMode.BULK
    assert len(roster.people.upserts) == 22
    assert set(roster.classes.upserts) == {"5a", "6b", "5a-eng1"}
    assert roster_zip({"results.csv": b""}) is None  # no roster, nothing to send


async def test_changed(tmp_path: Path) -> None:
    folder = tmp_path / "diary"
    source = OneRosterCsvSource(folder, SOURCE, clock=CLOCK)
    assert await source.changed()  # nothing read yet
    with pytest.raises(SourceUnavailable):
        await source.snapshot()
    write_folder(folder, demo_files())
    assert await source.changed()
    await source.snapshot()
    assert not await source.changed()
    os.utime(folder / "results.csv", ns=(1, 1))
    assert await source.changed()
    await source.snapshot()
    assert not await source.changed()
    (folder / "scoreScales.csv").write_bytes(b"sourcedId\n")
    assert await source.changed()  # a new file
    await source.snapshot()
    (folder / "timetable.ics").unlink()
    assert await source.changed()  # a removed file
    assert (await source.snapshot()).lessons == ()


async def test_changed_for_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "diary.zip"
    write_zip(path, demo_files())
    source = OneRosterCsvSource(path, SOURCE, clock=CLOCK)
    assert await source.changed()
    await source.snapshot()
    assert not await source.changed()
    write_zip(path, {**demo_files(), "results.csv": demo_files()["results.csv"] + b"\n"})
    assert await source.changed()


@pytest.mark.parametrize("content", [None, b"not a zip"], ids=["missing", "not-a-zip"])
async def test_an_unreadable_source_is_unavailable(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "diary.zip"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceUnavailable):
        await OneRosterCsvSource(path, SOURCE, clock=CLOCK).snapshot()
