"""Timetable lessons from an iCalendar (RFC 5545) file: a weekly series per lesson slot.

What the file must hold, per VEVENT:

* `UID` — stable across exports (derive it from the diary's own lesson-slot ID);
* `DTSTART` (a date-time; floating times are taken in the source's timezone) and `DTEND` or
  `DURATION`; `RRULE` for a series (usually `FREQ=WEEKLY;BYDAY=..;UNTIL=<term end>`), `EXDATE`
  for holidays, `RDATE` for extra lessons;
* `X-SFERUM-CLASS:<classSourcedId>` — the OneRoster class (homeroom or subject group) the lesson
  belongs to. iCalendar has no property for it, and the bridge needs it to pick the room;
* `SUMMARY` — the subject; `LOCATION` — the room; `ORGANIZER;CN=<name>` — the teacher.

A change of one lesson is a VEVENT with the same UID and a `RECURRENCE-ID` naming the original
start (and, as RFC 5545 asks, a higher `SEQUENCE`): if its subject, teacher, room or time differ
from the series it becomes `REPLACED` with a note saying what changed; `STATUS:CANCELLED` makes
it `CANCELLED`. Each lesson's `source_id` is `<UID>@<original start, ISO 8601>`, so a replaced or
cancelled lesson keeps the key of the regular one and the bridge edits the message it posted.

The expansion is done here with icalendar and dateutil (both already needed) rather than with
`recurring-ical-events`: it is a few dozen lines for what timetables use, and that library is
LGPL and still yields cancelled occurrences, which we would filter anyway.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
from dateutil import rrule as dateutil_rrule
from icalendar import Calendar, Component, vRecur

from bridges.diary.model import DiarySnapshot, Lesson, LessonStatus, SourceProblem
from bridges.diary.render import room_label
from bridges.diary.sources.base import SourceUnavailable
from sferum_shared import Clock

CLASS_PROPERTY = "X-SFERUM-CLASS"
_BEGIN_VEVENT = re.compile(rb"^BEGIN:VEVENT\s*$", re.IGNORECASE | re.MULTILINE)
# What reading a broken component can raise; any of them skips that event only.
_BAD_EVENT = (ValueError, TypeError, KeyError, AttributeError, OverflowError)
_NEVER = object()  # no snapshot yet: `changed()` is True even if the path is missing


@attrs.frozen
class _Slot:
    """One event's lesson fields, as written in the series or in an override."""

    uid: str
    class_id: str
    subject: str
    room: str
    teacher: str
    start: datetime
    end: datetime
    cancelled: bool
    description: str


def lessons_from_ical(
    data: bytes,
    source_name: str,
    window_start: date,
    window_end: date,
    timezone: str,
    file: str = "timetable.ics",
) -> tuple[list[Lesson], list[SourceProblem]]:
    """The lessons whose (original) day lies in `window_start..window_end`, both included.

    Bad events become problems at `file:line:0` (the line of their BEGIN:VEVENT) and are
    skipped; the other events are still expanded.
    """
    tz = ZoneInfo(timezone)
    problems: list[SourceProblem] = []

    def problem(line: int, message: str) -> None:
        problems.append(SourceProblem(source_name, f"{file}:{line}:0", message))

    try:
        calendar = Calendar.from_ical(data)
    except ValueError as err:
        problem(0, f"is not a readable iCalendar file ({err})")
        return [], problems
    # icalendar walks components in file order, so the n-th VEVENT starts at the n-th BEGIN.
    lines = [data.count(b"\n", 0, m.start()) + 1 for m in _BEGIN_VEVENT.finditer(data)]
    events = calendar.walk("VEVENT")
    lines += [0] * (len(events) - len(lines))

    series: dict[str, tuple[Component, _Slot, int]] = {}
    overrides: dict[tuple[str, datetime], tuple[_Slot, int]] = {}
    for event, line in zip(events, lines, strict=False):
        try:
            slot = _slot(event, tz)
            recurrence_id = event.get("RECURRENCE-ID")
            if recurrence_id is not None:
                original = _aware(recurrence_id.dt, tz)
                overrides[(slot.uid, original)] = (slot, line)
            elif slot.uid in series:
                problem(line, f"UID {slot.uid!r} is used by another series too; skipped")
            else:
                series[slot.uid] = (event, slot, line)
        except _BAD_EVENT as err:
            uid = str(event.get("UID", ""))
            problem(line, f"event {uid!r} cannot be read ({err}); skipped")

    first = datetime.combine(window_start, time.min, tz)
    last = datetime.combine(window_end, time.max, tz)
    lessons: list[Lesson] = []
    used: set[tuple[str, datetime]] = set()
    for uid, (event, slot, line) in series.items():
        try:
            starts = list(_occurrences(event, slot.start, first, last, tz))
        except _BAD_EVENT as err:
            problem(line, f"the repetition of {uid!r} cannot be expanded ({err}); skipped")
            continue
        for start in starts:
            key = (uid, start)
            override = overrides.get(key)
            used.add(key)
            lessons.append(_lesson(slot, start, override[0] if override else None, tz))
    for (uid, original), (change, _) in overrides.items():
        if (uid, original) in used:
            continue
        if uid not in series:
            # A lone changed occurrence: shown as it is, keyed like an occurrence would be.
            if first <= original <= last:
                lesson = _lesson(change, original, None, tz)
                lessons.append(
                    attrs.evolve(
                        lesson, start=change.start.astimezone(tz), end=change.end.astimezone(tz)
                    )
                )
        elif first <= change.start <= last and (original < first or original > last):
            lessons.append(_lesson(series[uid][1], original, change, tz))  # moved into view
    lessons.sort(key=lambda lesson: (lesson.start, lesson.class_id, lesson.source_id))
    return lessons, problems


def _slot(event: Component, tz: tzinfo) -> _Slot:
    uid = str(event.get("UID", "")).strip()
    if not uid:
        raise ValueError("it has no UID")
    class_id = str(event.get(CLASS_PROPERTY, "")).strip()
    if not class_id:
        raise ValueError(f"it has no {CLASS_PROPERTY} naming its class")
    raw_start = _value(event, "DTSTART")
    if raw_start is None:
        raise ValueError("it has no DTSTART")
    if not isinstance(raw_start, datetime):
        raise ValueError("DTSTART is a whole day, not a lesson's time")
    start = _aware(raw_start, tz)
    raw_end = _value(event, "DTEND")
    duration = _value(event, "DURATION")
    if isinstance(raw_end, date):
        end = _aware(raw_end, tz)
    elif isinstance(duration, timedelta):
        end = start + duration
    else:
        raise ValueError("it has neither DTEND nor DURATION")
    if end < start:
        raise ValueError("it ends before it starts")
    organizer = event.get("ORGANIZER")
    teacher = str(organizer.params.get("CN", "")) if organizer is not None else ""
    return _Slot(
        uid=uid,
        class_id=class_id,
        subject=str(event.get("SUMMARY", "")).strip(),
        room=str(event.get("LOCATION", "")).strip(),
        teacher=teacher.strip(),
        start=start,
        end=end,
        cancelled=str(event.get("STATUS", "")).upper() == "CANCELLED",
        description=str(event.get("DESCRIPTION", "")).strip(),
    )


def _value(event: Component, name: str) -> Any:
    """A date-time property's Python value (`.dt`), or None if the event lacks it."""
    prop: Any = event.get(name)
    return None if prop is None else prop.dt


def _aware(value: date, tz: tzinfo) -> datetime:
    """A date-time with a zone: floating times are in the source's zone, dates at midnight."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time.min, tz)
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def _occurrences(
    event: Component, start: datetime, first: datetime, last: datetime, tz: tzinfo
) -> Iterator[datetime]:
    """The series' starts in `first..last`, without its EXDATEs (a date EXDATE drops the day)."""
    rules = _as_list(event.get("RRULE"))
    rule_set = dateutil_rrule.rruleset()
    if rules:
        for rule in rules:
            fixed: Any = _with_utc_until(rule, tz)
            text = fixed.to_ical().decode()
            rule_set.rrule(dateutil_rrule.rrulestr(text, dtstart=start))
    else:
        rule_set.rdate(start)
    excluded_days: set[date] = set()
    for dates in _as_list(event.get("EXDATE")):
        for value in dates.dts:
            if isinstance(value.dt, datetime):
                rule_set.exdate(_aware(value.dt, tz))
            else:
                excluded_days.add(value.dt)
    for dates in _as_list(event.get("RDATE")):
        for value in dates.dts:
            if isinstance(value.dt, datetime):
                rule_set.rdate(_aware(value.dt, tz))
    for occurrence in rule_set.between(first, last, inc=True):
        if occurrence.astimezone(tz).date() not in excluded_days:
            yield occurrence


def _with_utc_until(rule: vRecur, tz: tzinfo) -> vRecur:
    """dateutil wants UNTIL in UTC when DTSTART has a zone; exporters also write a date."""
    until = rule.get("UNTIL")
    if not until:
        return rule
    value = until[0]
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.max, tz)
    changed = vRecur(rule)
    changed["UNTIL"] = [_aware(value, tz).astimezone(ZoneInfo("UTC"))]
    return changed


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _lesson(regular: _Slot, original: datetime, override: _Slot | None, tz: tzinfo) -> Lesson:
    """One occurrence of `regular` at `original`, changed by `override` if there is one."""
    source_id = f"{regular.uid}@{original.astimezone(tz).isoformat()}"
    length = regular.end - regular.start
    if override is None:
        return Lesson(
            source_id=source_id,
            class_id=regular.class_id,
            subject=regular.subject,
            start=original.astimezone(tz),
            end=(original + length).astimezone(tz),
            room=regular.room,
            teacher=regular.teacher,
            status=LessonStatus.CANCELLED if regular.cancelled else LessonStatus.NORMAL,
            note="урок отменён" if regular.cancelled else "",
        )
    status = LessonStatus.NORMAL
    note = ""
    if override.cancelled:
        status, note = LessonStatus.CANCELLED, override.description or "урок отменён"
    else:
        changes = _changes(regular, original, original + length, override, tz)
        if changes:
            status = LessonStatus.REPLACED
            note = "замена: " + "; ".join(changes)
            if override.description:
                note += f" — {override.description}"
    return Lesson(
        source_id=source_id,
        class_id=override.class_id,
        subject=override.subject,
        start=override.start.astimezone(tz),
        end=override.end.astimezone(tz),
        room=override.room,
        teacher=override.teacher,
        status=status,
        note=note,
    )


def _changes(
    regular: _Slot, start: datetime, end: datetime, override: _Slot, tz: tzinfo
) -> list[str]:
    """What the override changes, in the words a parent reads: «учитель Петров А. Н.»."""

    def hours(moment: datetime) -> str:
        return moment.astimezone(tz).strftime("%H:%M")

    changes = []
    if override.subject != regular.subject:
        changes.append(f"{override.subject or 'без предмета'} вместо {regular.subject}")
    if override.teacher != regular.teacher:
        changes.append(f"учитель {override.teacher or 'не указан'}")
    if override.room != regular.room:
        changes.append(room_label(override.room) if override.room else "кабинет не указан")
    if (override.start, override.end) != (start, end):
        day = "" if override.start.date() == start.date() else override.start.strftime("%d.%m ")
        changes.append(f"время {day}{hours(override.start)}–{hours(override.end)}")
    return changes


class FileSource:
    """A source read from a file or a folder (`path`), with a timetable for `days_ahead` days.

    `snapshot()` reads it in a thread (`_read`, which subclasses write); `changed()` is whether
    (name, mtime, size) of the file, or of each file in the folder, differ from when the last
    snapshot was read. The window moves with `clock`: this week's Monday to `days_ahead` days on.
    """

    def __init__(
        self,
        path: Path,
        name: str,
        *,
        clock: Clock,
        timezone: str = "Europe/Moscow",
        days_ahead: int = 14,
    ):
        self._path = path
        self._name = name
        self._timezone = timezone
        self._days_ahead = days_ahead
        self._clock = clock
        self._seen: object = _NEVER  # `_stat()` when the last snapshot was read

    @property
    def name(self) -> str:
        return self._name

    async def snapshot(self) -> DiarySnapshot:
        return await asyncio.to_thread(self._snapshot)

    async def changed(self) -> bool:
        return await asyncio.to_thread(lambda: self._stat() != self._seen)

    def _stat(self) -> tuple[tuple[str, int, int], ...] | None:
        """(name, mtime, size) of the file or of each file in the folder; None if missing."""
        try:
            paths = sorted(self._path.iterdir()) if self._path.is_dir() else [self._path]
            stats = [(p.name, p.stat()) for p in paths]
        except OSError:
            return None
        return tuple((name, s.st_mtime_ns, s.st_size) for name, s in stats)

    def _snapshot(self) -> DiarySnapshot:
        seen = self._stat()  # before reading: a change while we read shows up next time
        if seen is None:
            raise SourceUnavailable(f"{self._name}: {self._path} does not exist")
        snapshot = self._read()
        self._seen = seen
        return snapshot

    def _read(self) -> DiarySnapshot:
        raise NotImplementedError

    def _window(self) -> tuple[date, date]:
        return timetable_window(self._clock.today(ZoneInfo(self._timezone)), self._days_ahead)


class ICalSource(FileSource):
    """`ical:PATH`: the timetable alone, from an .ics file, for `days_ahead` days from today.

    The window starts on this week's Monday, so the week a parent looks at is always whole.
    """

    def _read(self) -> DiarySnapshot:
        try:
            data = self._path.read_bytes()
        except OSError as err:
            raise SourceUnavailable(f"{self._name}: cannot read {self._path} ({err})") from err
        start, end = self._window()
        lessons, problems = lessons_from_ical(
            data, self._name, start, end, self._timezone, self._path.name
        )
        return DiarySnapshot(lessons=tuple(lessons), problems=tuple(problems))


def timetable_window(today: date, days_ahead: int) -> tuple[date, date]:
    """From this week's Monday to `days_ahead` days after today."""
    return today - timedelta(days=today.weekday()), today + timedelta(days=days_ahead)
