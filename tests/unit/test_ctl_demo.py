"""The demo's data is dated for the day it is written: current on any day of any year."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from bridges.diary.model import LessonStatus
from bridges.diary.sources.csvsource import OneRosterCsvSource
from synapse_sferum.ctl.demo import (
    DIARY,
    NEWS,
    ROSTER,
    DemoCalendar,
    SchoolYear,
    demo_files,
    ru_date,
    write_demo,
)
from synapse_sferum.ctl.main import main
from synapse_sferum.directory import age_on
from synapse_sferum.policy.articles import article_content
from synapse_sferum.roster.oneroster import parse_roster
from tests.demo import noon

MONDAY = date(2026, 11, 23)


@pytest.mark.parametrize(
    ("today", "n", "expected"),
    [
        (MONDAY, 1, date(2026, 11, 24)),
        (MONDAY, -1, date(2026, 11, 20)),  # the Friday before
        (MONDAY, 5, date(2026, 11, 30)),
        (date(2026, 11, 27), 1, date(2026, 11, 30)),  # Friday: next is Monday
        (date(2026, 11, 28), 1, date(2026, 11, 30)),  # Saturday
        (date(2026, 11, 29), -1, date(2026, 11, 27)),  # Sunday: the last was Friday
        (date(2026, 11, 29), -6, date(2026, 11, 20)),
    ],
)
def test_school_days_skip_weekends(today: date, n: int, expected: date) -> None:
    assert DemoCalendar(today).school_day(n) == expected


def test_school_day_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="school_day"):
        DemoCalendar(MONDAY).school_day(0)


@pytest.mark.parametrize(
    ("today", "monday"),
    [(MONDAY, MONDAY), (date(2026, 11, 29), MONDAY), (date(2027, 1, 1), date(2026, 12, 28))],
)
def test_monday_is_this_weeks(today: date, monday: date) -> None:
    calendar = DemoCalendar(today)
    assert calendar.monday(0) == monday
    assert calendar.monday(-4, 4) == monday - timedelta(weeks=4) + timedelta(days=4)


@pytest.mark.parametrize(
    "today",
    [
        date(2026, 3, 13),
        date(2026, 3, 14),
        date(2026, 3, 15),
        date(2028, 2, 29),
        date(2027, 2, 28),
        date(2027, 3, 1),
        date(2027, 12, 31),
    ],
)
@pytest.mark.parametrize(("month", "day"), [(3, 14), (1, 1), (12, 31), (2, 28), (3, 1)])
def test_born_gives_the_age_asked_for_today(today: date, month: int, day: int) -> None:
    born = DemoCalendar(today).born(11, month, day)
    assert age_on(born, today) == 11
    assert (born.month, born.day) == (month, day)


def test_a_29_february_birthday_is_refused() -> None:
    with pytest.raises(ValueError, match="29 February"):
        DemoCalendar(MONDAY).born(11, 2, 29)


@pytest.mark.parametrize(
    ("today", "start", "title"),
    [
        (date(2026, 9, 1), date(2026, 9, 1), "2026/2027 учебный год"),
        (date(2026, 8, 31), date(2025, 9, 1), "2025/2026 учебный год"),
        (date(2027, 7, 15), date(2026, 9, 1), "2026/2027 учебный год"),  # summer: the past year
        (date(2026, 12, 31), date(2026, 9, 1), "2026/2027 учебный год"),
    ],
)
def test_the_school_year(today: date, start: date, title: str) -> None:
    year = SchoolYear.of(today)
    assert (year.start, year.end, year.title) == (start, date(start.year + 1, 5, 31), title)


# The days the suite is also run at (scripts/test --at), and a day every 23 days for two years:
# each weekday, each month, the summer and both turns of the year.
DAYS = sorted(
    {date(2027, 9, 1), date(2026, 12, 31), date(2027, 1, 1), date(2027, 7, 15), date(2028, 2, 29)}
    | {date(2026, 1, 5) + timedelta(days=23 * n) for n in range(32)}
)


@pytest.mark.parametrize("today", DAYS, ids=str)
async def test_the_demo_is_current_on(today: date, tmp_path: Path) -> None:
    folders = write_demo(tmp_path, today)
    snapshot = await OneRosterCsvSource(folders[DIARY], "demo", clock=noon(today)).snapshot()
    assert snapshot.problems == () and snapshot.complete
    monday = DemoCalendar(today).monday(0)
    week = [lesson for lesson in snapshot.lessons if lesson.start.date() < monday + timedelta(7)]
    assert len(week) == 20  # this week's timetable, Monday to Friday, for 5А and 6Б
    changed = [lesson for lesson in snapshot.lessons if lesson.status is not LessonStatus.NORMAL]
    assert {lesson.status for lesson in changed} == {LessonStatus.REPLACED, LessonStatus.CANCELLED}
    assert all(today < lesson.start.date() <= today + timedelta(4) for lesson in changed)
    assert all(today < h.due <= today + timedelta(4) for h in snapshot.homework)
    assert all(today - timedelta(14) <= m.work_date < today for m in snapshot.marks)
    assert len(snapshot.marks) == 18 and len(snapshot.homework) == 3
    roster = parse_roster(folders[ROSTER], today)
    ages = {
        person: age_on(d.birth_date, today)
        for person, d in roster.demographics.upserts.items()
        if d.birth_date is not None
    }
    assert set(ages.values()) == {11, 12}  # 5th and 6th graders, whatever the year
    article = (folders[NEWS] / "open-lessons.html").read_text(encoding="utf-8")
    assert article.startswith("<h1>") and "<ul>" in article and "{" not in article
    calendar = DemoCalendar(today)
    for n in (2, 3, 7):  # the open lessons are in the coming school days
        assert ru_date(calendar.school_day(n)) in article
    content, dropped = article_content(article, None)  # as `news post` sends it: whole
    assert dropped == [] and content["body"].startswith("Неделя открытых уроков\n")


@pytest.mark.parametrize(
    ("day", "text"),
    [
        (date(2027, 3, 1), "1 марта"),
        (date(2026, 12, 31), "31 декабря"),
        (date(2027, 5, 9), "9 мая"),
    ],
)
def test_russian_dates(day: date, text: str) -> None:
    assert ru_date(day) == text


def test_the_roster_of_the_diary_is_the_roster() -> None:
    roster, diary = demo_files(ROSTER, MONDAY), demo_files(DIARY, MONDAY)
    assert {name: diary[name] for name in roster if name != "manifest.csv"} == {
        name: data for name, data in roster.items() if name != "manifest.csv"
    }
    assert b"file.results,bulk" in diary["manifest.csv"]
    assert b"file.results,absent" in roster["manifest.csv"]
    assert diary["timetable.ics"].count(b"\r\n") == diary["timetable.ics"].count(b"\n")


def test_no_shipped_file_holds_a_date() -> None:
    """Dates come from the templates' helpers only, so nothing in the repository goes stale."""
    templates = Path(__file__).resolve().parents[2] / "synapse_sferum" / "demo"
    for path in templates.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not any(f"20{decade}" in text for decade in range(20, 40)), path


def test_demo_data_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo-data", str(tmp_path), "--today", "2028-02-29"]) == 0
    assert "for 2028-02-29" in capsys.readouterr().out
    assert (tmp_path / "diary" / "timetable.ics").exists()
    assert (tmp_path / "roster" / "users.csv").exists()
    assert (tmp_path / "news" / "open-lessons.html").exists()
    with pytest.raises(SystemExit):
        main(["demo-data", str(tmp_path), "--today", "29.02.2028"])
    assert "must be a date written as YYYY-MM-DD" in capsys.readouterr().err
