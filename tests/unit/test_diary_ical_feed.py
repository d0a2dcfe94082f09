"""The per-class iCalendar feed: what a calendar app gets, and who gets it (ical_feed.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import icalendar
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridges.diary.ical_feed import build_calendar, feed_path, feed_token, routes, token_ok
from bridges.diary.model import DiarySnapshot, Lesson, LessonStatus
from sferum_shared import Clock

MSK = ZoneInfo("Europe/Moscow")
STAMP = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
SECRET = "s" * 32


def at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=MSK)


LESSONS = (
    Lesson(
        "tt-5a-mon-2@2026-11-16T09:25",
        "5a",
        "Русский язык",
        at(16, 9, 25),
        at(16, 10, 10),
        room="каб. 21",
        teacher="Иванова М. С.",
    ),
    Lesson(
        "tt-5a-mon-1@2026-11-16T08:30",
        "5a",
        "Математика",
        at(16, 8, 30),
        at(16, 9, 15),
        room="каб. 21",
    ),
    Lesson(
        "tt-5a-tue-1@2026-11-17T08:30",
        "5a",
        "Математика",
        at(17, 8, 30),
        at(17, 9, 15),
        status=LessonStatus.CANCELLED,
        note="учитель болен",
    ),
    Lesson(
        "tt-5a-wed-1@2026-11-18T08:30",
        "5a",
        "Литература",
        at(18, 8, 30),
        at(18, 9, 15),
        room="каб. 5",
        teacher="Петров А. Н.",
        status=LessonStatus.REPLACED,
        note="замена: Петров А. Н.",
    ),
    # another class, and a lesson given in UTC by its source
    Lesson("tt-6b-mon-1@2026-11-16T08:30", "6b", "История", at(16, 8, 30), at(16, 9, 15)),
    Lesson(
        "tt-5a-thu-1@2026-11-19T08:30",
        "5a",
        "Музыка",
        datetime(2026, 11, 19, 5, 30, tzinfo=UTC),
        datetime(2026, 11, 19, 6, 15, tzinfo=UTC),
    ),
)


def events(data: bytes) -> list[icalendar.Event]:
    return list(icalendar.Calendar.from_ical(data).walk("VEVENT"))


def test_one_event_per_lesson_of_the_class_with_stable_uids_in_moscow_time() -> None:
    data = build_calendar(LESSONS, "5a", "Расписание 5А", "Europe/Moscow", STAMP)
    got = events(data)
    assert [str(e["UID"]) for e in got] == [
        "tt-5a-mon-1@2026-11-16T08:30",
        "tt-5a-mon-2@2026-11-16T09:25",
        "tt-5a-tue-1@2026-11-17T08:30",
        "tt-5a-wed-1@2026-11-18T08:30",
        "tt-5a-thu-1@2026-11-19T08:30",
    ]
    text = data.decode()
    assert "DTSTART;TZID=Europe/Moscow:20261116T083000" in text
    assert "DTEND;TZID=Europe/Moscow:20261116T091500" in text
    assert "DTSTART;TZID=Europe/Moscow:20261119T083000" in text  # 05:30 UTC, shown in MSK
    assert "BEGIN:VTIMEZONE" in text and "TZID:Europe/Moscow" in text
    assert "VERSION:2.0" in text and "PRODID:" in text
    assert all(e["DTSTAMP"].dt == STAMP for e in got)
    first = got[0]
    assert str(first["SUMMARY"]) == "Математика" and str(first["LOCATION"]) == "каб. 21"
    assert first["DTSTART"].dt == at(16, 8, 30)


def test_changes_and_cancellations_are_marked() -> None:
    by_uid = {
        str(e["UID"]): e
        for e in events(build_calendar(LESSONS, "5a", "5А", "Europe/Moscow", STAMP))
    }
    cancelled = by_uid["tt-5a-tue-1@2026-11-17T08:30"]
    assert str(cancelled["STATUS"]) == "CANCELLED"
    assert str(cancelled["DESCRIPTION"]) == "учитель болен"
    replaced = by_uid["tt-5a-wed-1@2026-11-18T08:30"]
    assert str(replaced["STATUS"]) == "CONFIRMED"
    assert str(replaced["DESCRIPTION"]) == "замена: Петров А. Н.\nУчитель: Петров А. Н."
    assert int(replaced["SEQUENCE"]) > int(by_uid["tt-5a-mon-1@2026-11-16T08:30"]["SEQUENCE"])
    assert "DESCRIPTION" not in by_uid["tt-5a-mon-1@2026-11-16T08:30"]


def test_the_same_snapshot_gives_the_same_bytes() -> None:
    one = build_calendar(LESSONS, "5a", "5А", "Europe/Moscow", STAMP)
    assert one == build_calendar(tuple(reversed(LESSONS)), "5a", "5А", "Europe/Moscow", STAMP)
    assert events(build_calendar(LESSONS, "7v", "7В", "Europe/Moscow", STAMP)) == []


def test_tokens_are_per_class_and_per_secret() -> None:
    token = feed_token(SECRET, "5a")
    assert len(token) == 32 and int(token, 16) >= 0
    assert token != feed_token(SECRET, "6b") and token != feed_token("t" * 32, "5a")
    assert token_ok(SECRET, "5a", token)
    assert not token_ok(SECRET, "6b", token)
    assert not token_ok(SECRET, "5a", token[:-1])
    assert not token_ok("", "5a", feed_token("", "5a"))  # no secret: feeds are off
    # a class ID is one path segment whatever it holds
    odd = feed_path(SECRET, "5а/б")
    assert odd == f"/ical/5%D0%B0%2F%D0%B1/{feed_token(SECRET, '5а/б')}.ics"


async def test_the_feed_is_served_only_at_its_tokenised_url() -> None:
    app = web.Application()
    app.add_routes(
        routes(lambda: DiarySnapshot(lessons=LESSONS), SECRET, "Europe/Moscow", Clock.fixed(STAMP))
    )
    async with TestClient(TestServer(app)) as client:
        good = await client.get(feed_path(SECRET, "5a"))
        assert good.status == 200
        assert good.headers["Content-Type"].startswith("text/calendar")
        assert len(events(await good.read())) == 5
        for path in (
            f"/ical/5a/{feed_token(SECRET, '6b')}.ics",  # another class's token
            f"/ical/5a/{'0' * 32}.ics",
            "/ical/5a/.ics",
            f"/ical/6b/{feed_token(SECRET, '5a')}.ics",
        ):
            response = await client.get(path)
            assert response.status == 404, path
        unknown = await client.get(feed_path(SECRET, "7v"))
        assert unknown.status == 200 and events(await unknown.read()) == []
