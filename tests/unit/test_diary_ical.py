"""Timetables from iCalendar: weekly series, holidays, replacements and cancellations."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bridges.diary.model import Lesson, LessonStatus, SourceProblem
from bridges.diary.sources.base import SourceUnavailable
from bridges.diary.sources.icalsource import ICalSource, lessons_from_ical
from sferum_shared import Clock
from tests.demo import DIARY, demo_files

MSK = ZoneInfo("Europe/Moscow")
DEMO_DAY = date(2026, 11, 22)  # a Sunday: the next school days are Monday 23 and Tuesday 24
SOURCE = "ical:test"
# Mondays 08:30–09:15 from 7 September 2026; the window below holds 16 and 23 November.
SERIES = (
    "UID:math-5a-mon-1",
    "DTSTART;TZID=Europe/Moscow:20260907T083000",
    "DTEND;TZID=Europe/Moscow:20260907T091500",
    "RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20270531T205959Z",
    "SUMMARY:Математика",
    "LOCATION:каб. 21",
    "ORGANIZER;CN=Иванова М. С.:mailto:ivanova@school1.example",
    "X-SFERUM-CLASS:5a",
)
WINDOW = (date(2026, 11, 16), date(2026, 11, 29))


def at_noon(day: date) -> Clock:
    """A clock stopped at noon of `day` in Moscow."""
    return Clock.fixed(datetime.combine(day, datetime.min.time(), MSK) + timedelta(hours=12))


def ics(*events: tuple[str, ...]) -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//RU"]
    for event in events:
        lines += ["BEGIN:VEVENT", "DTSTAMP:20260825T090000Z", *event, "END:VEVENT"]
    return ("\r\n".join([*lines, "END:VCALENDAR"]) + "\r\n").encode()


def expand(
    data: bytes, window: tuple[date, date] = WINDOW
) -> tuple[list[Lesson], list[SourceProblem]]:
    return lessons_from_ical(data, SOURCE, window[0], window[1], "Europe/Moscow")


def at(day: int, hour: int, minute: int, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=MSK)


def override(*lines: str, on: str = "20261123T083000") -> tuple[str, ...]:
    """A change of the 23 November lesson: the series' lines with `lines` in their place."""
    names = {line.split(":")[0].split(";")[0] for line in lines}
    kept = [
        line
        for line in SERIES
        if line.split(":")[0].split(";")[0] not in {*names, "RRULE", "DTSTART", "DTEND"}
    ]
    timing = [] if "DTSTART" in names else [
        f"DTSTART;TZID=Europe/Moscow:{on}",
        f"DTEND;TZID=Europe/Moscow:{on[:9]}091500",
    ]  # fmt: skip
    return (*kept, *timing, *lines, f"RECURRENCE-ID;TZID=Europe/Moscow:{on}", "SEQUENCE:1")


def test_a_weekly_series_gives_each_lesson_in_the_window() -> None:
    lessons, problems = expand(ics(SERIES))
    assert problems == []
    assert lessons == [
        Lesson(
            source_id=f"math-5a-mon-1@{start.isoformat()}",
            class_id="5a",
            subject="Математика",
            start=start,
            end=start.replace(hour=9, minute=15),
            room="каб. 21",
            teacher="Иванова М. С.",
        )
        for start in (at(16, 8, 30), at(23, 8, 30))
    ]
    assert lessons[1].key == "lesson:math-5a-mon-1@2026-11-23T08:30:00+03:00"


@pytest.mark.parametrize(
    ("extra", "starts"),
    [
        pytest.param((), [at(16, 8, 30), at(23, 8, 30)], id="plain"),
        pytest.param(
            ("EXDATE;TZID=Europe/Moscow:20261116T083000",), [at(23, 8, 30)], id="exdate-time"
        ),
        pytest.param(("EXDATE;VALUE=DATE:20261123",), [at(16, 8, 30)], id="exdate-day"),
        pytest.param(
            ("EXDATE;TZID=Europe/Moscow:20261116T083000,20261123T083000",), [], id="exdate-list"
        ),
        pytest.param(
            ("RDATE;TZID=Europe/Moscow:20261121T100000",),
            [at(16, 8, 30), at(21, 10, 0), at(23, 8, 30)],
            id="rdate",
        ),
    ],
)
def test_exdate_and_rdate(extra: tuple[str, ...], starts: list[datetime]) -> None:
    lessons, problems = expand(ics((*SERIES, *extra)))
    assert problems == []
    assert [lesson.start for lesson in lessons] == starts


@pytest.mark.parametrize(
    ("rule", "count"),
    [
        pytest.param("RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20261116", 1, id="until-a-date"),
        pytest.param("RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20261116T083000", 1, id="until-floating"),
        pytest.param("RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=11", 1, id="count"),
        pytest.param("RRULE:FREQ=WEEKLY;BYDAY=MO,WE", 4, id="two-days"),
        pytest.param("RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO", 1, id="every-other-week"),
    ],
)
def test_repetition_rules(rule: str, count: int) -> None:
    series = tuple(rule if line.startswith("RRULE") else line for line in SERIES)
    lessons, problems = expand(ics(series))
    assert problems == []
    assert len(lessons) == count


def test_floating_times_are_in_the_sources_timezone() -> None:
    series = tuple(line.replace(";TZID=Europe/Moscow", "") for line in SERIES)
    lessons, _ = expand(ics(series))
    assert lessons[0].start == at(16, 8, 30)


def test_a_single_event_without_a_rule() -> None:
    event = tuple(line for line in SERIES if not line.startswith("RRULE"))
    moved = tuple(line.replace("20260907", "20261118") for line in event)
    lessons, _ = expand(ics(moved))
    assert [(lesson.start, lesson.end) for lesson in lessons] == [(at(18, 8, 30), at(18, 9, 15))]


@pytest.mark.parametrize(
    ("change", "status", "note", "fields"),
    [
        pytest.param(
            ("ORGANIZER;CN=Петров А. Н.:mailto:petrov@school1.example", "LOCATION:каб. 17"),
            LessonStatus.REPLACED,
            "замена: учитель Петров А. Н.; каб. 17",
            {"teacher": "Петров А. Н.", "room": "каб. 17"},
            id="teacher-and-room",
        ),
        pytest.param(
            ("SUMMARY:Информатика", "DESCRIPTION:Иванова М. С. на олимпиаде"),
            LessonStatus.REPLACED,
            "замена: Информатика вместо Математика — Иванова М. С. на олимпиаде",
            {"subject": "Информатика"},
            id="subject-with-reason",
        ),
        pytest.param(
            (
                "DTSTART;TZID=Europe/Moscow:20261123T102000",
                "DTEND;TZID=Europe/Moscow:20261123T110500",
            ),
            LessonStatus.REPLACED,
            "замена: время 10:20–11:05",
            {"start": at(23, 10, 20), "end": at(23, 11, 5)},
            id="moved-within-the-day",
        ),
        pytest.param(
            ("STATUS:CANCELLED", "DESCRIPTION:учитель болен"),
            LessonStatus.CANCELLED,
            "учитель болен",
            {},
            id="cancelled",
        ),
        pytest.param(("STATUS:CANCELLED",), LessonStatus.CANCELLED, "урок отменён", {}, id="bare"),
        pytest.param((), LessonStatus.NORMAL, "", {}, id="unchanged-override"),
    ],
)
def test_overrides_keep_the_lessons_key(
    change: tuple[str, ...], status: LessonStatus, note: str, fields: dict[str, object]
) -> None:
    lessons, problems = expand(ics(SERIES, override(*change)))
    assert problems == []
    regular, changed = lessons
    assert regular.status is LessonStatus.NORMAL
    assert changed.source_id == "math-5a-mon-1@2026-11-23T08:30:00+03:00"
    assert (changed.status, changed.note) == (status, note)
    for name, value in fields.items():
        assert getattr(changed, name) == value


def test_a_lesson_moved_into_the_window_from_outside_it() -> None:
    moved = override(
        "DTSTART;TZID=Europe/Moscow:20261127T083000",
        "DTEND;TZID=Europe/Moscow:20261127T091500",
        on="20261130T083000",
    )
    lessons, _ = expand(ics(SERIES, moved))
    assert [lesson.source_id for lesson in lessons] == [
        "math-5a-mon-1@2026-11-16T08:30:00+03:00",
        "math-5a-mon-1@2026-11-23T08:30:00+03:00",
        "math-5a-mon-1@2026-11-30T08:30:00+03:00",
    ]
    assert lessons[2].start == at(27, 8, 30)
    assert lessons[2].note == "замена: время 27.11 08:30–09:15"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        pytest.param(
            tuple(line for line in SERIES if not line.startswith("X-SFERUM")),
            "has no X-SFERUM-CLASS",
            id="no-class",
        ),
        pytest.param(
            tuple(
                line.replace(";TZID=Europe/Moscow:20260907T083000", ";VALUE=DATE:20260907")
                for line in SERIES
                if not line.startswith("DTEND")
            ),
            "DTSTART is a whole day",
            id="all-day",
        ),
        pytest.param(
            tuple(line for line in SERIES if not line.startswith("DTEND")),
            "neither DTEND nor DURATION",
            id="no-end",
        ),
    ],
)
def test_a_bad_event_is_one_problem_at_its_line_and_the_rest_go_through(
    bad: tuple[str, ...], message: str
) -> None:
    good = tuple(line.replace("math-5a", "rus-6b").replace(":5a", ":6b") for line in SERIES)
    lessons, problems = expand(ics(good, bad))
    assert [lesson.class_id for lesson in lessons] == ["6b", "6b"]
    # 3 calendar lines, then 11 lines of the good event: the bad one begins on line 15.
    assert [(p.source, p.where, p.kind) for p in problems] == [
        (SOURCE, "timetable.ics:15:0", "invalid")
    ]
    assert message in problems[0].message


def test_an_unreadable_file_is_one_problem() -> None:
    lessons, problems = expand(b"this is not a calendar")
    assert lessons == []
    assert [p.where for p in problems] == ["timetable.ics:0:0"]


def test_the_demo_timetable() -> None:
    """Written for 22 November: weekly from four weeks before that week to 13 weeks after."""
    data = demo_files(DIARY, DEMO_DAY)["timetable.ics"]
    week, problems = expand(data, (date(2026, 11, 23), date(2026, 11, 29)))
    assert problems == []
    assert len(week) == 20  # 5A and 6Б, two lessons a day, Monday to Friday
    assert {lesson.class_id for lesson in week} == {"5a", "6b"}
    changed = {
        lesson.source_id: lesson for lesson in week if lesson.status is not LessonStatus.NORMAL
    }
    # The first lesson of 5А on the next school day is replaced, the second of 6Б on the day
    # after is cancelled.
    assert changed["tt-5a-mo-1@2026-11-23T08:30:00+03:00"].status is LessonStatus.REPLACED
    assert changed["tt-5a-mo-1@2026-11-23T08:30:00+03:00"].teacher == "Петров А. Н."
    assert changed["tt-6b-tu-2@2026-11-24T09:25:00+03:00"].status is LessonStatus.CANCELLED
    assert len(changed) == 2
    year, _ = expand(data, (date(2026, 9, 1), date(2027, 5, 31)))
    assert year[0].start == datetime(2026, 10, 19, 8, 30, tzinfo=MSK)
    assert year[-1].start == datetime(2027, 2, 15, 9, 25, tzinfo=MSK)
    assert len(year) == 2 * 2 * 5 * 17 + 2 * 2  # 17 whole weeks, and the last Monday's


async def test_ical_source(tmp_path: Path) -> None:
    path = tmp_path / "timetable.ics"
    source = ICalSource(path, SOURCE, clock=at_noon(date(2026, 11, 18)), days_ahead=6)
    assert await source.changed()
    with pytest.raises(SourceUnavailable):
        await source.snapshot()
    path.write_bytes(ics(SERIES))
    snapshot = await source.snapshot()
    # From Monday 16 to Tuesday 24 November.
    assert [lesson.start for lesson in snapshot.lessons] == [at(16, 8, 30), at(23, 8, 30)]
    assert snapshot.marks == () and snapshot.roster_zip is None
    assert not await source.changed()
    os.utime(path, ns=(1, 1))
    assert await source.changed()
    await source.snapshot()
    assert not await source.changed()
