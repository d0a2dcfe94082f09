"""The platform bot's side of a chat about quiet hours (docs/identity.md): `!часы …` / `!hours …`
commands read into a new schedule, and what the bot answers.

Pure, like `policy.quiet`, whose schedules and moments it works with.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from datetime import datetime

import attrs

from synapse_sferum.policy.quiet import (
    DAY_KEYS,
    DAY_NAMES_RU,
    NO_HOURS,
    Schedule,
    ScheduleError,
    Week,
    WorkRange,
    back_at,
    build_schedule,
    check_timezone,
    describe,
    parse_range,
    status,
)

COMMAND_PREFIXES = ("!часы", "!hours")
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
        back = back_at(current.until, now, schedule.timezone)
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
            work = parse_range(match[1], match[2], where)
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
        new = build_schedule(command.timezone or base.timezone, days, True, "")
    return Outcome(new, f"Сохранено. {state_text(new, now)}")
