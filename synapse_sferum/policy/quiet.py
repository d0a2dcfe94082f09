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

import enum
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
COMMAND_PREFIXES = ("!часы", "!hours")
MINUTES_PER_DAY = 24 * 60
# No working interval lasts this long unless the week has no gap at all (a week and the largest
# daylight-saving shift are shorter; the horizon below is longer).
_ENDLESS = timedelta(days=7, hours=12)
# Local days looked at around a moment: a weekly pattern repeats within seven, plus one for a
# range that runs past midnight.
_HORIZON_DAYS = 8
_CONTENT_KEYS = ("days", "enabled", "timezone")
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_RANGE = re.compile(r"([^-]+)-([^-]+)")
_DASHES = re.compile(r"\s*[-–—]\s*")
_OFF_WORDS = frozenset({"выкл", "выключить", "off"})
_ON_WORDS = frozenset({"вкл", "включить", "on"})
_HELP_WORDS = frozenset({"помощь", "справка", "help", "?"})
_ZONE_WORDS = frozenset({"пояс", "tz", "timezone"})
_DAY_WORDS: Mapping[str, int] = {
    **{name: i for i, name in enumerate(DAY_NAMES_RU)},
    **{name: i for i, name in enumerate(DAY_KEYS)},
}
_DAY_GROUPS: Mapping[str, tuple[int, ...]] = {
    "будни": (0, 1, 2, 3, 4),
    "weekdays": (0, 1, 2, 3, 4),
    "выходные": (5, 6),
    "weekend": (5, 6),
    "ежедневно": tuple(range(7)),
    "daily": tuple(range(7)),
}


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


def _range(start_text: Any, end_text: Any, where: str) -> WorkRange:
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


def _schedule(timezone: str, days: Week, enabled: bool, where: str) -> Schedule:
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
            parsed.append(_range(pair[0], pair[1], f"{where}[{i}]"))
        week[DAY_KEYS.index(key)] = tuple(parsed)
    return _schedule(timezone, tuple(week), enabled, "days")


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


def _from(moment: datetime, now: datetime, timezone: str) -> str:
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
    return f"{who} сейчас не на связи. Ответит {_from(back, now, schedule.timezone)}{zone_note}."


def help_text(default_timezone: str) -> str:
    return (
        "Рабочие часы. В нерабочее время push-уведомления не приходят (сообщения доставляются "
        "как обычно), а тому, кто напишет вам в личный чат, один раз придёт автоответ о том, "
        "когда вы ответите.\n"
        "!часы пн-пт 08:00-17:00 — задать часы; можно несколько: "
        "!часы пн-пт 08:00-12:00 13:00-17:00 сб 09:00-13:00\n"
        f"!часы пояс Asia/Yekaterinburg — часовой пояс (по умолчанию {default_timezone})\n"
        "!часы — показать настройки\n"
        "!часы выкл, !часы вкл — выключить и снова включить\n"
        "По-английски: !hours mon-fri 08:00-17:00, !hours off"
    )


STAFF_ONLY_TEXT = "Рабочие часы задают только учителя и сотрудники школы."


def state_text(schedule: Schedule | None, now: datetime) -> str:
    """What the bot says about a teacher's quiet hours now."""
    if schedule is None or not schedule.enabled:
        return (
            "Тихие часы выключены: push-уведомления приходят в любое время. "
            "Задать рабочие часы: !часы пн-пт 08:00-17:00"
        )
    current = status(schedule, now)
    hours = f"Рабочие часы: {describe(schedule)}."
    if current.quiet and current.until is not None:
        back = _from(current.until, now, schedule.timezone)
        return f"{hours}\nСейчас нерабочее время: push-уведомления выключены, включатся {back}."
    return f"{hours}\nСейчас рабочее время: push-уведомления приходят."


def error_text(error: ScheduleError, default_timezone: str) -> str:
    return f"Не получилось: {error.russian}\n\n{help_text(default_timezone)}"


# -- chat commands --------------------------------------------------------------------------


class Action(enum.Enum):
    SHOW = "show"
    HELP = "help"
    OFF = "off"
    ON = "on"
    SET = "set"  # new days or time zone


@attrs.frozen
class Command:
    action: Action
    days: Week = NO_HOURS  # SET: the new week, or no hours to keep the current one
    timezone: str | None = None  # SET: a new time zone


def _days(word: str) -> tuple[int, ...] | None:
    """Days named by one word: «пн», «пн-пт», «пн,ср,пт», «пт-пн» (wraps), «будни»; or None."""
    if word in _DAY_GROUPS:
        return _DAY_GROUPS[word]
    found: list[int] = []
    for part in word.split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        if first not in _DAY_WORDS or (last and last not in _DAY_WORDS):
            return None
        a = _DAY_WORDS[first]
        b = _DAY_WORDS[last] if last else a
        found += [(a + k) % 7 for k in range((b - a) % 7 + 1)]
    return tuple(found) or None


def parse_command(body: str) -> Command | None:
    """A `!часы …` / `!hours …` command, or None for any other message.

    Days come first and the hours that follow apply to them: `пн-пт 08:00-12:00 13:00-17:00
    сб 09:00-13:00`. Days written next to each other share the hours that follow. A time zone is
    `пояс Europe/Samara`, or just its name. Days a command leaves out have no working hours.
    """
    words = _DASHES.sub("-", body.strip()).replace(";", " ").split()
    if not words or words[0].lower() not in COMMAND_PREFIXES:
        return None
    rest = words[1:]
    if not rest:
        return Command(Action.SHOW)
    if len(rest) == 1:
        word = rest[0].lower()
        for words_of, action in (
            (_OFF_WORDS, Action.OFF),
            (_ON_WORDS, Action.ON),
            (_HELP_WORDS, Action.HELP),
        ):
            if word in words_of:
                return Command(action)
    return _parse_set(rest)


def _parse_set(words: list[str]) -> Command:
    week: list[list[WorkRange]] = [[] for _ in range(7)]
    group: list[int] = []  # the days the next hours apply to
    group_word = ""
    group_has_hours = False
    timezone = None
    i = 0
    while i < len(words):
        word = words[i]
        low = word.lower().strip(",")
        where = f"«{word}»"
        if low in _ZONE_WORDS:
            if i + 1 == len(words):
                raise ScheduleError(
                    where,
                    "name the time zone after it, e.g. Europe/Moscow",
                    "после этого слова укажите пояс, например Europe/Moscow",
                )
            timezone = check_timezone(words[i + 1], f"«{words[i + 1]}»")
            i += 2
            continue
        if "/" in word or low == "utc":
            timezone = check_timezone(word, where)
        elif (days := _days(low)) is not None:
            if group and not group_has_hours:
                group += days
            else:
                group, group_word, group_has_hours = list(days), word, False
        elif ":" in low and (match := _RANGE.fullmatch(low)):
            if not group:
                raise ScheduleError(
                    where,
                    "name the days first, e.g. mon-fri 08:00-17:00",
                    "сначала укажите дни, например пн-пт 08:00-17:00",
                )
            work = _range(match[1], match[2], where)
            for day in group:
                week[day].append(work)
            group_has_hours = True
        else:
            raise ScheduleError(
                where,
                "not understood: expected days (mon-fri), hours (08:00-17:00) or a time zone",
                "не понимаю: ожидаются дни (пн-пт), часы (08:00-17:00) или пояс",
            )
        i += 1
    if group and not group_has_hours:
        raise ScheduleError(
            f"«{group_word}»",
            "give the hours after the days, e.g. 08:00-17:00",
            "после дней укажите часы, например 08:00-17:00",
        )
    return Command(Action.SET, tuple(tuple(day) for day in week), timezone)


@attrs.frozen
class Outcome:
    """What a command does: the account data to write (None: leave it) and the bot's reply."""

    store: Schedule | None
    reply: str


def answer(
    command: Command, current: Schedule | None, now: datetime, default_timezone: str
) -> Outcome:
    """The bot's side of the conversation; raises ScheduleError when nothing can be saved."""
    if command.action is Action.HELP:
        return Outcome(None, help_text(default_timezone))
    if command.action is Action.SHOW:
        return Outcome(None, state_text(current, now))
    base = current or Schedule(timezone=default_timezone, days=NO_HOURS, enabled=False)
    if command.action is Action.OFF:
        new = attrs.evolve(base, enabled=False)
    else:
        days = command.days if any(command.days) else base.days
        new = _schedule(command.timezone or base.timezone, days, True, "")
    return Outcome(new, f"Сохранено. {state_text(new, now)}")
