"""Quiet hours (docs/identity.md): a teacher's working hours, and what follows from them at a
moment.

Pure: no Synapse and no I/O. The glue (synapse_sferum/quiet_hours.py) reads a schedule from the
teacher's account data or from a chat command to the platform's bot, and asks here whether a
moment is quiet, since when (the start of the quiet period: it keys the one automatic notice per
conversation) and until when (the notice's "back at", and the moment pushes resume).

The account data (type `ru.sferum.quiet_hours`)::

    {"enabled": true,                 # optional; false switches quiet hours off, keeping the days
     "timezone": "Europe/Moscow",     # optional; an IANA name, the server's default when absent
     "days": {"mon": [["08:00", "17:00"]],
              "tue": [["08:00", "12:00"], ["13:00", "17:00"]],
              "sat": [["22:00", "02:00"]]}}

A day without a list has no working hours: all of it is quiet. "24:00" ends a day, and a range
that ends at or before its start runs into the next day. Overlapping ranges simply add up.
Wall-clock times follow zoneinfo with fold=0: a time that a daylight-saving jump skips means the
moment an hour later (a range this leaves empty has no hours that day), and a time that occurs
twice means its first occurrence.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import attrs

from sferum_shared.settings import setting

DEFAULT_TIMEZONE = "Europe/Moscow"
DAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES_RU = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")
MINUTES_PER_DAY = 24 * 60
# No working interval lasts this long unless the week has no gap at all (a week and the largest
# daylight-saving shift are shorter; the horizon below is longer).
_ENDLESS = timedelta(days=7, hours=12)
# Local days looked at around a moment: a weekly pattern repeats within seven, plus one for a
# range that runs past midnight.
_HORIZON_DAYS = 8
_CONTENT_KEYS = ("days", "enabled", "timezone")
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")


@attrs.frozen
class QuietHoursConfig:
    """The module config's `quiet_hours` section."""

    enabled: bool = setting(
        True,
        "Teachers set working hours (account data ru.sferum.quiet_hours, or «!часы пн-пт "
        "08:00-17:00» to the bot); outside them they get no pushes, and a pupil or parent who "
        "writes gets one automatic notice per chat and quiet period saying when they are back",
    )
    default_timezone: str = DEFAULT_TIMEZONE
    # Each change of state is also timed to the minute; this is the check besides those.
    check_interval_seconds: int = setting(
        30,
        "How often the schedule is checked besides the exact changes, in seconds",
        low=5,
        high=3600,
    )


class ScheduleError(ValueError):
    """What is wrong and where: a path in the account data (`days.mon[0]`) or a command's word.

    `str()` is English, for logs and admins; `russian` is for the teacher's chat with the bot.
    """

    def __init__(self, where: str, english: str, russian: str):
        self.where = where
        self.russian = f"{where}: {russian}" if where else russian
        super().__init__(f"{where}: {english}" if where else english)


@attrs.frozen(order=True)
class WorkRange:
    """Working time within one local day, in minutes after midnight."""

    start: int  # 0 to 1439
    end: int  # 1 to 1440; at or before `start`, the range ends on the next day

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def label(self) -> str:
        text = f"{_hhmm(self.start)}–{_hhmm(self.end)}"
        return f"{text} (до следующего дня)" if self.overnight else text


Week = tuple[tuple[WorkRange, ...], ...]  # seven days, Monday first
NO_HOURS: Week = ((),) * 7


@attrs.frozen
class Schedule:
    timezone: str
    days: Week
    enabled: bool = True

    def to_content(self) -> dict[str, Any]:
        """The account data that says exactly this (what the bot writes for a command)."""
        return {
            "enabled": self.enabled,
            "timezone": self.timezone,
            "days": {
                DAY_KEYS[day]: [[_hhmm(r.start), _hhmm(r.end)] for r in ranges]
                for day, ranges in enumerate(self.days)
                if ranges
            },
        }


@attrs.frozen
class Status:
    """Where a moment falls in a schedule.

    `since`: when the current quiet period began (it names the period); None while working.
    `until`: when the state changes next; None if it never does (always working, or off).
    """

    quiet: bool
    since: datetime | None = None
    until: datetime | None = None


# -- reading a schedule ---------------------------------------------------------------------


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def check_timezone(name: Any, where: str) -> str:
    """An IANA time zone name as zoneinfo spells it (a chat may write it in lower case)."""
    if isinstance(name, str) and name:
        try:
            zoneinfo.ZoneInfo(name)
            return name
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            for known in zoneinfo.available_timezones():
                if known.lower() == name.lower():
                    return known
    raise ScheduleError(
        where,
        f"{_show(name)} is not a known time zone (an IANA name like Europe/Moscow)",
        f"«{name}» — неизвестный часовой пояс (нужно имя вроде Europe/Moscow)",
    )


def _minutes(text: Any, where: str, *, end: bool) -> int:
    match = _TIME.fullmatch(text) if isinstance(text, str) else None
    if match:
        hours, minutes = int(match[1]), int(match[2])
        if hours < 24 and minutes < 60:
            return hours * 60 + minutes
        if end and hours == 24 and minutes == 0:
            return MINUTES_PER_DAY
    raise ScheduleError(
        where, f"{_show(text)} is not a time HH:MM", f"«{text}» — это не время ЧЧ:ММ"
    )


def parse_range(start_text: Any, end_text: Any, where: str) -> WorkRange:
    start = _minutes(start_text, where, end=False)
    end = _minutes(end_text, where, end=True)
    if start == end:
        raise ScheduleError(
            where,
            f"the range {_show(start_text)} to {_show(end_text)} is empty"
            ' (a whole day is "00:00" to "24:00")',
            "начало и конец совпадают (весь день — 00:00-24:00)",
        )
    return WorkRange(start, end)


def build_schedule(timezone: str, days: Week, enabled: bool, where: str) -> Schedule:
    week = tuple(tuple(sorted(set(ranges))) for ranges in days)
    if enabled and not any(week):
        raise ScheduleError(
            where,
            'no working hours: give at least one range, or set "enabled": false',
            "не задано ни одного рабочего часа (например: !часы пн-пт 08:00-17:00)",
        )
    return Schedule(timezone=timezone, days=week, enabled=enabled)


def parse_content(content: Mapping[str, Any], default_timezone: str) -> Schedule | None:
    """The schedule in a teacher's account data; None when there is none (`{}` after a delete).

    Lists may arrive as tuples: Synapse hands modules account data frozen.
    """
    if not content:
        return None
    for key in content:
        if key not in _CONTENT_KEYS:
            allowed = ", ".join(_CONTENT_KEYS)
            raise ScheduleError(
                str(key),
                f"unknown key; allowed keys: {allowed}",
                f"неизвестный ключ; допустимы: {allowed}",
            )
    enabled = content.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ScheduleError(
            "enabled", f"must be true or false, got {_show(enabled)}", "должно быть true или false"
        )
    timezone = check_timezone(content.get("timezone", default_timezone), "timezone")
    raw_days = content.get("days", {})
    if not isinstance(raw_days, Mapping):
        raise ScheduleError(
            "days",
            "must map days (mon … sun) to lists of ranges",
            "должно сопоставлять дням (mon … sun) списки интервалов",
        )
    week: list[tuple[WorkRange, ...]] = [()] * 7
    for key, ranges in raw_days.items():
        where = f"days.{key}"
        if key not in DAY_KEYS:
            raise ScheduleError(
                where,
                f"unknown day; days are {', '.join(DAY_KEYS)}",
                f"неизвестный день; дни: {', '.join(DAY_KEYS)}",
            )
        if not isinstance(ranges, list | tuple):
            raise ScheduleError(
                where,
                'must be a list of ["HH:MM", "HH:MM"] ranges',
                'должно быть списком интервалов ["ЧЧ:ММ", "ЧЧ:ММ"]',
            )
        parsed = []
        for i, pair in enumerate(ranges):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ScheduleError(
                    f"{where}[{i}]",
                    f'must be a pair ["HH:MM", "HH:MM"], got {_show(pair)}',
                    'должно быть парой ["ЧЧ:ММ", "ЧЧ:ММ"]',
                )
            parsed.append(parse_range(pair[0], pair[1], f"{where}[{i}]"))
        week[DAY_KEYS.index(key)] = tuple(parsed)
    return build_schedule(timezone, tuple(week), enabled, "days")


# -- where a moment falls -------------------------------------------------------------------


def _at(day: date, minutes: int, zone: zoneinfo.ZoneInfo) -> datetime:
    """A local wall-clock time as a UTC moment ("24:00" is the next midnight)."""
    wall = datetime.combine(day, time()) + timedelta(minutes=minutes)
    return wall.replace(tzinfo=zone).astimezone(UTC)


def _working_intervals(schedule: Schedule, around: datetime) -> list[tuple[datetime, datetime]]:
    """Working intervals of the local days around a moment; those that overlap or touch merged."""
    zone = zoneinfo.ZoneInfo(schedule.timezone)
    today = around.astimezone(zone).date()
    spans = []
    for offset in range(-_HORIZON_DAYS, _HORIZON_DAYS + 1):
        day = today + timedelta(days=offset)
        for r in schedule.days[day.weekday()]:
            end_day = day + timedelta(days=1) if r.overnight else day
            start, end = _at(day, r.start, zone), _at(end_day, r.end, zone)
            if start < end:  # else a daylight-saving jump swallowed the range that day
                spans.append((start, end))
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def status(schedule: Schedule, now: datetime) -> Status:
    """Is `now` (an aware moment) quiet, since when, and until when?"""
    if not schedule.enabled:
        return Status(quiet=False)
    intervals = _working_intervals(schedule, now)
    for start, end in intervals:
        if start <= now < end:
            return Status(quiet=False, until=None if end - now > _ENDLESS else end)
    # A valid schedule works at least once a week, so both exist within the horizon.
    since = max(end for _, end in intervals if end <= now)
    until = min(start for start, _ in intervals if start > now)
    return Status(quiet=True, since=since, until=until)


# -- what the platform says -----------------------------------------------------------------


def describe(schedule: Schedule) -> str:
    """«пн–пт 08:00–17:00; сб 09:00–13:00 (Europe/Moscow)»: neighbouring days alike together."""
    parts = []
    first = 0
    while first < 7:
        ranges = schedule.days[first]
        last = first
        while last < 6 and schedule.days[last + 1] == ranges:
            last += 1
        if ranges:
            days = DAY_NAMES_RU[first]
            if last > first:
                days += f"–{DAY_NAMES_RU[last]}"
            parts.append(f"{days} {', '.join(r.label() for r in ranges)}")
        first = last + 1
    return f"{'; '.join(parts)} ({schedule.timezone})"


def back_at(moment: datetime, now: datetime, timezone: str) -> str:
    """«сегодня с 08:00», «завтра с 08:00» or «с 08:00 пн», in the schedule's time zone."""
    zone = zoneinfo.ZoneInfo(timezone)
    local = moment.astimezone(zone)
    today = now.astimezone(zone).date()
    clock = local.strftime("%H:%M")
    if local.date() == today:
        return f"сегодня с {clock}"
    if local.date() == today + timedelta(days=1):
        return f"завтра с {clock}"
    return f"с {clock} {DAY_NAMES_RU[local.weekday()]}"


def auto_reply_text(
    schedule: Schedule, back: datetime, now: datetime, *, teacher: bool, default_timezone: str
) -> str:
    """The automatic notice: «Учитель сейчас не на связи. Ответит с 08:00 пн.»

    The time is in the teacher's time zone, named when it is not the school's usual one.
    """
    who = "Учитель" if teacher else "Сотрудник школы"
    zone_note = "" if schedule.timezone == default_timezone else f" (время {schedule.timezone})"
    return f"{who} сейчас не на связи. Ответит {back_at(back, now, schedule.timezone)}{zone_note}."
