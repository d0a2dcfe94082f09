"""The timetable of a class as an iCalendar feed (RFC 5545), at a tokenised URL.

Calendar apps cannot do a Matrix login, so the feed's URL is its own credential:
`/ical/{class_id}/{token}.ics`, the token being an HMAC of the class ID under the bridge's
`ical_secret`. Anyone who has a class's link sees that class's timetable and nothing else;
rotating `ical_secret` revokes every link at once. A timetable is far less private than marks,
which is why this weaker, shareable credential is acceptable here and not for the diary.

The sources already expand weekly series into single lessons with stable per-occurrence IDs, so
each lesson is one VEVENT whose UID is the lesson's `source_id`: a calendar app that refreshes
the feed updates a replaced lesson in place and strikes out a cancelled one.
"""

from __future__ import annotations

import hashlib
import hmac
import zoneinfo
from collections.abc import Callable, Iterable
from datetime import datetime
from urllib.parse import quote

import icalendar
from aiohttp import web

from bridges.diary.model import DiarySnapshot, Lesson, LessonStatus
from bridges.diary.render import room_label
from sferum_shared import Clock

PRODID = "-//Sferum school platform//diary bridge//RU"
TOKEN_CHARS = 32


def feed_token(secret: str, class_id: str) -> str:
    """The URL token of a class's feed: HMAC-SHA256(ical_secret, class_id), 128 bits in hex."""
    digest = hmac.new(secret.encode(), class_id.encode(), hashlib.sha256).hexdigest()
    return digest[:TOKEN_CHARS]


def token_ok(secret: str, class_id: str, token: str) -> bool:
    """Constant-time check; with no `ical_secret` configured, the feeds are off."""
    if not secret:
        return False
    return hmac.compare_digest(feed_token(secret, class_id).encode(), token.encode())


def feed_path(secret: str, class_id: str) -> str:
    """The feed's path on the bridge (prefix it with the bridge's public URL)."""
    return f"/ical/{quote(class_id, safe='')}/{feed_token(secret, class_id)}.ics"


def _event(lesson: Lesson, tz: zoneinfo.ZoneInfo, stamp: datetime) -> icalendar.Event:
    description = "\n".join(
        part
        for part in (lesson.note, f"Учитель: {lesson.teacher}" if lesson.teacher else "")
        if part
    )
    event = icalendar.Event.new(
        uid=lesson.source_id,
        summary=lesson.subject,
        start=lesson.start.astimezone(tz),
        end=lesson.end.astimezone(tz),
        stamp=stamp,
        location=room_label(lesson.room) if lesson.room else None,
        description=description or None,
        # A changed lesson is a later revision of the same UID: apps that cached the normal one
        # take the change only if its SEQUENCE is higher.
        sequence=0 if lesson.status is LessonStatus.NORMAL else 1,
    )
    if lesson.status is LessonStatus.CANCELLED:
        event.add("status", "CANCELLED")
    else:
        event.add("status", "CONFIRMED")
    return event


def build_calendar(
    lessons: Iterable[Lesson],
    class_id: str,
    title: str,
    timezone: str,
    stamp: datetime,
) -> bytes:
    """The VCALENDAR of one class's lessons, in `timezone` with its VTIMEZONE, sorted by start.

    `stamp` is the DTSTAMP of every event (the time the feed is built); it is a parameter so
    that the same snapshot always gives the same bytes in tests.
    """
    tz = zoneinfo.ZoneInfo(timezone)
    calendar = icalendar.Calendar.new(prodid=PRODID, name=title, uid=f"sferum-diary-{class_id}")
    calendar.add("x-wr-timezone", timezone)
    mine = sorted(
        (lesson for lesson in lessons if lesson.class_id == class_id),
        key=lambda lesson: (lesson.start, lesson.source_id),
    )
    for lesson in mine:
        calendar.add_component(_event(lesson, tz, stamp))
    calendar.add_missing_timezones()
    return bytes(calendar.to_ical())


def routes(
    snapshot: Callable[[], DiarySnapshot],
    secret: str,
    timezone: str,
    clock: Clock,
) -> web.RouteTableDef:
    """`GET /ical/{class_id}/{token}.ics` over the bridge's current snapshot.

    A wrong token and an unknown class get the same 404, so the feed does not tell which class
    IDs exist.
    """
    table = web.RouteTableDef()

    @table.get("/ical/{class_id}/{token}.ics")
    async def feed(request: web.Request) -> web.Response:
        class_id = request.match_info["class_id"]
        if not token_ok(secret, class_id, request.match_info["token"]):
            raise web.HTTPNotFound(text="no such calendar")
        lessons = snapshot().lessons
        body = build_calendar(lessons, class_id, f"Расписание {class_id}", timezone, clock.now())
        return web.Response(
            body=body,
            content_type="text/calendar",
            charset="utf-8",
            headers={"Cache-Control": "private, max-age=300"},
        )

    return table
