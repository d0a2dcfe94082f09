"""Quiet hours as pure rules: schedules and commands, where a moment falls, what is said."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synapse_sferum.policy.quiet import (
    NO_HOURS,
    Schedule,
    ScheduleError,
    Status,
    WorkRange,
    auto_reply_text,
    describe,
    parse_content,
    status,
)
from synapse_sferum.policy.quiet_chat import Action, Command, answer, parse_command, state_text

MSK = "Europe/Moscow"
BERLIN = "Europe/Berlin"


def hm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def r(start: str, end: str) -> WorkRange:
    return WorkRange(hm(start), hm(end))


def week(**days: list[WorkRange]) -> tuple[tuple[WorkRange, ...], ...]:
    keys = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    return tuple(tuple(days.get(k, [])) for k in keys)


def at(text: str, zone: str = MSK) -> datetime:
    """A local wall-clock moment, "2026-09-21 10:00" (2026-09-21 is a Monday)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


OFFICE = Schedule(
    MSK, week(**{d: [r("08:00", "17:00")] for d in ("mon", "tue", "wed", "thu", "fri")})
)


# -- account data ---------------------------------------------------------------------------


def test_account_data_is_read_sorted_and_written_back_the_same() -> None:
    content = {
        "timezone": "Asia/Yekaterinburg",
        "days": {
            "tue": [["13:00", "17:00"], ["08:00", "12:00"]],
            "sat": [["22:00", "02:00"]],
            "sun": [["00:00", "24:00"]],
        },
    }
    schedule = parse_content(content, MSK)
    assert schedule == Schedule(
        "Asia/Yekaterinburg",
        week(
            tue=[r("08:00", "12:00"), r("13:00", "17:00")],
            sat=[WorkRange(hm("22:00"), hm("02:00"))],
            sun=[WorkRange(0, 1440)],
        ),
    )
    assert schedule.days[5][0].overnight
    assert schedule.to_content() == {
        "enabled": True,
        "timezone": "Asia/Yekaterinburg",
        "days": {
            "tue": [["08:00", "12:00"], ["13:00", "17:00"]],
            "sat": [["22:00", "02:00"]],
            "sun": [["00:00", "24:00"]],
        },
    }
    assert parse_content(schedule.to_content(), MSK) == schedule


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param({}, None, id="deleted"),
        pytest.param(
            {"days": {"mon": [["8:00", "17:00"]]}},
            Schedule(MSK, week(mon=[r("08:00", "17:00")])),
            id="default-zone-one-digit-hour",
        ),
        pytest.param(
            {"enabled": False}, Schedule(MSK, NO_HOURS, enabled=False), id="off-without-days"
        ),
        pytest.param(
            {"days": {"fri": (("09:00", "10:00"),)}},
            Schedule(MSK, week(fri=[r("09:00", "10:00")])),
            id="frozen-tuples",
        ),
    ],
)
def test_account_data_shapes(content: dict[str, Any], expected: Schedule | None) -> None:
    assert parse_content(content, MSK) == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            {"days": {"mon": [["25:00", "17:00"]]}},
            'days.mon[0]: "25:00" is not a time HH:MM',
            id="hour-25",
        ),
        pytest.param(
            {"days": {"mon": [["08:00", "17:60"]]}},
            'days.mon[0]: "17:60" is not a time HH:MM',
            id="minute-60",
        ),
        pytest.param(
            {"days": {"mon": [["24:00", "17:00"]]}},
            'days.mon[0]: "24:00" is not a time HH:MM',
            id="24-only-ends",
        ),
        pytest.param(
            {"days": {"tue": [["08:00", "17:00"], [8, 17]]}},
            "days.tue[1]: 8 is not a time HH:MM",
            id="numbers",
        ),
        pytest.param(
            {"days": {"mon": [["08:00", "08:00"]]}},
            'days.mon[0]: the range "08:00" to "08:00" is empty'
            ' (a whole day is "00:00" to "24:00")',
            id="empty-range",
        ),
        pytest.param(
            {"days": {"mon": [["08:00", "12:00", "17:00"]]}},
            'days.mon[0]: must be a pair ["HH:MM", "HH:MM"], got ["08:00", "12:00", "17:00"]',
            id="triple",
        ),
        pytest.param(
            {"days": {"mon": "08:00-17:00"}},
            'days.mon: must be a list of ["HH:MM", "HH:MM"] ranges',
            id="string-day",
        ),
        pytest.param(
            {"days": {"monday": [["08:00", "17:00"]]}},
            "days.monday: unknown day; days are mon, tue, wed, thu, fri, sat, sun",
            id="unknown-day",
        ),
        pytest.param(
            {"days": [["08:00", "17:00"]]},
            "days: must map days (mon … sun) to lists of ranges",
            id="days-list",
        ),
        pytest.param(
            {"days": {}},
            'days: no working hours: give at least one range, or set "enabled": false',
            id="no-hours",
        ),
        pytest.param(
            {"tz": MSK, "days": {"mon": [["08:00", "17:00"]]}},
            "tz: unknown key; allowed keys: days, enabled, timezone",
            id="unknown-key",
        ),
        pytest.param(
            {"enabled": "yes", "days": {"mon": [["08:00", "17:00"]]}},
            'enabled: must be true or false, got "yes"',
            id="enabled-string",
        ),
        pytest.param(
            {"timezone": "Europe/Mars", "days": {"mon": [["08:00", "17:00"]]}},
            'timezone: "Europe/Mars" is not a known time zone (an IANA name like Europe/Moscow)',
            id="unknown-zone",
        ),
        pytest.param(
            {"timezone": "/etc/passwd", "days": {"mon": [["08:00", "17:00"]]}},
            'timezone: "/etc/passwd" is not a known time zone (an IANA name like Europe/Moscow)',
            id="path-zone",
        ),
        pytest.param(
            {"timezone": 3, "days": {"mon": [["08:00", "17:00"]]}},
            "timezone: 3 is not a known time zone (an IANA name like Europe/Moscow)",
            id="number-zone",
        ),
    ],
)
def test_bad_account_data_says_what_and_where(content: dict[str, Any], message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_content(content, MSK)
    assert str(caught.value) == message


def test_errors_have_a_russian_text_for_the_chat() -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_content({"days": {"mon": [["25:00", "17:00"]]}}, MSK)
    assert caught.value.russian == "days.mon[0]: «25:00» — это не время ЧЧ:ММ"


# -- where a moment falls -------------------------------------------------------------------

LUNCH = Schedule(MSK, week(mon=[r("08:00", "12:00"), r("13:00", "17:00")]))
ADJACENT = Schedule(MSK, week(mon=[r("08:00", "12:00"), r("12:00", "17:00")]))
NIGHT = Schedule(MSK, week(fri=[WorkRange(hm("22:00"), hm("02:00"))]))
MIDNIGHT = Schedule(MSK, week(mon=[r("20:00", "24:00")], tue=[r("00:00", "04:00")]))
ONCE = Schedule(MSK, week(mon=[r("08:00", "09:00")]))
ALWAYS = Schedule(
    MSK,
    week(**{d: [WorkRange(0, 1440)] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}),
)
OFFICE_BERLIN = Schedule(BERLIN, OFFICE.days)
# 2026-03-29 is a Sunday: Berlin jumps from 02:00 CET to 03:00 CEST.
SPRING_GAP = Schedule(BERLIN, week(sun=[r("02:30", "04:00")]))
# 02:30 means 03:30 CEST, after 03:10: nothing is left of the range that day.
SWALLOWED = Schedule(BERLIN, week(sun=[r("02:30", "03:10")], mon=[r("08:00", "09:00")]))
YEKATERINBURG = Schedule("Asia/Yekaterinburg", OFFICE.days)


def working(until: str | None, zone: str = MSK) -> Status:
    return Status(quiet=False, until=at(until, zone) if until else None)


def quiet_(since: str, until: str, zone: str = MSK) -> Status:
    return Status(quiet=True, since=at(since, zone), until=at(until, zone))


@pytest.mark.parametrize(
    ("schedule", "now", "expected"),
    [
        pytest.param(OFFICE, at("2026-09-21 10:00"), working("2026-09-21 17:00"), id="mon-10"),
        pytest.param(OFFICE, at("2026-09-21 08:00"), working("2026-09-21 17:00"), id="start-in"),
        pytest.param(
            OFFICE,
            at("2026-09-21 17:00"),
            quiet_("2026-09-21 17:00", "2026-09-22 08:00"),
            id="end-out",
        ),
        pytest.param(
            OFFICE,
            at("2026-09-21 07:59"),
            quiet_("2026-09-18 17:00", "2026-09-21 08:00"),
            id="monday-dawn-since-friday",
        ),
        pytest.param(
            OFFICE,
            at("2026-09-26 12:00"),
            quiet_("2026-09-25 17:00", "2026-09-28 08:00"),
            id="saturday",
        ),
        pytest.param(
            OFFICE,
            datetime(2026, 9, 21, 5, 0, tzinfo=UTC),
            working("2026-09-21 17:00"),
            id="utc-input-is-08-msk",
        ),
        pytest.param(
            LUNCH,
            at("2026-09-21 12:30"),
            quiet_("2026-09-21 12:00", "2026-09-21 13:00"),
            id="lunch",
        ),
        pytest.param(ADJACENT, at("2026-09-21 12:00"), working("2026-09-21 17:00"), id="adjacent"),
        pytest.param(
            NIGHT, at("2026-09-26 01:00"), working("2026-09-26 02:00"), id="overnight-in"
        ),
        pytest.param(
            NIGHT,
            at("2026-09-26 03:00"),
            quiet_("2026-09-26 02:00", "2026-10-02 22:00"),
            id="overnight-out",
        ),
        pytest.param(
            MIDNIGHT, at("2026-09-21 23:00"), working("2026-09-22 04:00"), id="through-midnight"
        ),
        pytest.param(
            ONCE,
            at("2026-09-21 10:00"),
            quiet_("2026-09-21 09:00", "2026-09-28 08:00"),
            id="once-a-week",
        ),
        pytest.param(ALWAYS, at("2026-09-23 03:00"), working(None), id="always-working"),
        pytest.param(
            Schedule(MSK, OFFICE.days, enabled=False),
            at("2026-09-26 12:00"),
            Status(quiet=False),
            id="switched-off",
        ),
        pytest.param(
            OFFICE_BERLIN,
            at("2026-03-27 17:30", BERLIN),
            quiet_("2026-03-27 17:00", "2026-03-30 08:00", BERLIN),
            id="berlin-spring-weekend",
        ),
        pytest.param(
            OFFICE_BERLIN,
            at("2026-10-23 18:00", BERLIN),
            quiet_("2026-10-23 17:00", "2026-10-26 08:00", BERLIN),
            id="berlin-autumn-weekend",
        ),
        pytest.param(
            SPRING_GAP,
            datetime(2026, 3, 29, 1, 20, tzinfo=UTC),  # 03:20 CEST
            quiet_("2026-03-22 04:00", "2026-03-29 03:30", BERLIN),
            id="skipped-start-means-an-hour-later",
        ),
        pytest.param(
            SWALLOWED,
            at("2026-03-29 12:00", BERLIN),
            quiet_("2026-03-23 09:00", "2026-03-30 08:00", BERLIN),
            id="range-inside-the-jump-is-empty",
        ),
        pytest.param(
            YEKATERINBURG,
            datetime(2026, 9, 21, 3, 30, tzinfo=UTC),  # 08:30 in Yekaterinburg, 06:30 in Moscow
            working("2026-09-21 17:00", "Asia/Yekaterinburg"),
            id="teacher-zone",
        ),
    ],
)
def test_where_a_moment_falls(schedule: Schedule, now: datetime, expected: Status) -> None:
    assert status(schedule, now) == expected


def test_the_spring_weekend_is_an_hour_shorter() -> None:
    current = status(OFFICE_BERLIN, at("2026-03-28 12:00", BERLIN))
    assert current.since is not None and current.until is not None
    assert current.until - current.since == timedelta(days=2, hours=14)


_RANGES = st.builds(WorkRange, st.integers(0, 1439), st.integers(1, 1440)).filter(
    lambda w: w.start != w.end
)
_SCHEDULES = st.builds(
    Schedule,
    st.sampled_from([MSK, BERLIN, "America/New_York", "Australia/Lord_Howe"]),
    st.lists(st.lists(_RANGES, max_size=3).map(tuple), min_size=7, max_size=7).map(tuple),
).filter(lambda s: any(s.days))
_MOMENTS = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(_SCHEDULES, _MOMENTS)
def test_periods_are_consistent_around_any_moment(schedule: Schedule, now: datetime) -> None:
    current = status(schedule, now)
    second = timedelta(seconds=1)
    if current.quiet:
        assert current.since is not None and current.until is not None
        assert current.since <= now < current.until
        # the period is one: the same from its first to its last second
        assert status(schedule, current.since) == current
        assert status(schedule, current.until - second) == current
        assert not status(schedule, current.since - second).quiet
        assert not status(schedule, current.until).quiet
        assert current.until - current.since <= timedelta(days=7, hours=1)
    elif current.until is not None:
        assert now < current.until
        after = status(schedule, current.until)
        assert after.quiet and after.since == current.until
        assert not status(schedule, current.until - second).quiet


# -- what is said ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "now", "teacher", "text"),
    [
        pytest.param(
            OFFICE,
            at("2026-09-21 06:00"),
            True,
            "Учитель сейчас не на связи. Ответит сегодня с 08:00.",
            id="today",
        ),
        pytest.param(
            OFFICE,
            at("2026-09-21 19:00"),
            True,
            "Учитель сейчас не на связи. Ответит завтра с 08:00.",
            id="tomorrow",
        ),
        pytest.param(
            OFFICE,
            at("2026-09-26 12:00"),
            True,
            "Учитель сейчас не на связи. Ответит с 08:00 пн.",
            id="after-the-weekend",
        ),
        pytest.param(
            OFFICE,
            at("2026-09-26 12:00"),
            False,
            "Сотрудник школы сейчас не на связи. Ответит с 08:00 пн.",
            id="staff",
        ),
        pytest.param(
            YEKATERINBURG,
            datetime(2026, 9, 21, 2, 0, tzinfo=UTC),  # 07:00 there, 05:00 in Moscow
            True,
            "Учитель сейчас не на связи. Ответит сегодня с 08:00 (время Asia/Yekaterinburg).",
            id="other-zone-named",
        ),
    ],
)
def test_automatic_notice(schedule: Schedule, now: datetime, teacher: bool, text: str) -> None:
    current = status(schedule, now)
    assert current.quiet and current.until is not None
    assert auto_reply_text(
        schedule, current.until, now, teacher=teacher, default_timezone=MSK
    ) == (text)


@pytest.mark.parametrize(
    ("schedule", "text"),
    [
        pytest.param(OFFICE, "пн–пт 08:00–17:00 (Europe/Moscow)", id="office"),
        pytest.param(
            Schedule(MSK, (*OFFICE.days[:5], (r("09:00", "13:00"),), ())),
            "пн–пт 08:00–17:00; сб 09:00–13:00 (Europe/Moscow)",
            id="saturday",
        ),
        pytest.param(
            Schedule(MSK, week(mon=[r("10:00", "12:00")], wed=[r("10:00", "12:00")])),
            "пн 10:00–12:00; ср 10:00–12:00 (Europe/Moscow)",
            id="apart",
        ),
        pytest.param(LUNCH, "пн 08:00–12:00, 13:00–17:00 (Europe/Moscow)", id="lunch"),
        pytest.param(NIGHT, "пт 22:00–02:00 (до следующего дня) (Europe/Moscow)", id="night"),
    ],
)
def test_description(schedule: Schedule, text: str) -> None:
    assert describe(schedule) == text


def test_state_texts() -> None:
    assert state_text(None, at("2026-09-21 10:00")).startswith("Тихие часы выключены")
    assert state_text(OFFICE, at("2026-09-26 12:00")) == (
        "Рабочие часы: пн–пт 08:00–17:00 (Europe/Moscow).\n"
        "Сейчас нерабочее время: push-уведомления выключены, включатся с 08:00 пн."
    )
    assert state_text(OFFICE, at("2026-09-21 10:00")).endswith(
        "Сейчас рабочее время: push-уведомления приходят."
    )


# -- chat commands --------------------------------------------------------------------------

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def set_(zone: str | None = None, **days: list[WorkRange]) -> Command:
    return Command(Action.SET, week(**days), zone)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "!часы пн-пт 08:00-17:00",
            set_(**{d: [r("08:00", "17:00")] for d in WEEKDAYS}),
            id="ru",
        ),
        pytest.param(
            "!hours mon-fri 08:00-17:00",
            set_(**{d: [r("08:00", "17:00")] for d in WEEKDAYS}),
            id="en",
        ),
        pytest.param(
            "  !ЧАСЫ Пн-Пт 8:00-17:00 ",
            set_(**{d: [r("08:00", "17:00")] for d in WEEKDAYS}),
            id="case",
        ),
        pytest.param(
            "!часы пн - пт 08:00 — 17:00",
            set_(**{d: [r("08:00", "17:00")] for d in WEEKDAYS}),
            id="dashes",
        ),
        pytest.param(
            "!часы будни 08:00-17:00",
            set_(**{d: [r("08:00", "17:00")] for d in WEEKDAYS}),
            id="weekdays",
        ),
        pytest.param(
            "!часы пн-пт 08:00-12:00 13:00-17:00; сб 09:00-13:00",
            set_(
                **{d: [r("08:00", "12:00"), r("13:00", "17:00")] for d in WEEKDAYS},
                sat=[r("09:00", "13:00")],
            ),
            id="groups",
        ),
        pytest.param(
            "!часы пн, ср 10:00-12:00",
            set_(mon=[r("10:00", "12:00")], wed=[r("10:00", "12:00")]),
            id="days-side-by-side",
        ),
        pytest.param(
            "!hours fri-mon 10:00-12:00",
            set_(**{d: [r("10:00", "12:00")] for d in ("fri", "sat", "sun", "mon")}),
            id="wraps",
        ),
        pytest.param(
            "!часы пн,ср-чт 22:00-02:00",
            set_(**{d: [WorkRange(hm("22:00"), hm("02:00"))] for d in ("mon", "wed", "thu")}),
            id="list-and-overnight",
        ),
        pytest.param(
            "!часы пн-пт 08:00-17:00 пояс Asia/Yekaterinburg",
            set_("Asia/Yekaterinburg", **{d: [r("08:00", "17:00")] for d in WEEKDAYS}),
            id="zone-word",
        ),
        pytest.param(
            "!hours mon 08:00-17:00 tz europe/samara",
            set_("Europe/Samara", mon=[r("08:00", "17:00")]),
            id="zone-lower-case",
        ),
        pytest.param("!часы Asia/Omsk", set_("Asia/Omsk"), id="zone-only"),
        pytest.param("!часы", Command(Action.SHOW), id="show"),
        pytest.param("!часы выкл", Command(Action.OFF), id="off"),
        pytest.param("!hours OFF", Command(Action.OFF), id="off-en"),
        pytest.param("!часы вкл", Command(Action.ON), id="on"),
        pytest.param("!hours help", Command(Action.HELP), id="help"),
        pytest.param("Здравствуйте!", None, id="chat"),
        pytest.param("!часики 08:00", None, id="other-command"),
        pytest.param("", None, id="empty"),
    ],
)
def test_commands(body: str, expected: Command | None) -> None:
    assert parse_command(body) == expected


@pytest.mark.parametrize(
    ("body", "russian"),
    [
        pytest.param(
            "!часы 08:00-17:00",
            "«08:00-17:00»: сначала укажите дни, например пн-пт 08:00-17:00",
            id="hours-first",
        ),
        pytest.param(
            "!часы пн-пт 25:00-17:00", "«25:00-17:00»: «25:00» — это не время ЧЧ:ММ", id="hour-25"
        ),
        pytest.param(
            "!часы пн 08:00-08:00",
            "«08:00-08:00»: начало и конец совпадают (весь день — 00:00-24:00)",
            id="empty",
        ),
        pytest.param(
            "!часы пн-пт", "«пн-пт»: после дней укажите часы, например 08:00-17:00", id="no-hours"
        ),
        pytest.param(
            "!часы пн-пт 08:00-17:00 сб",
            "«сб»: после дней укажите часы, например 08:00-17:00",
            id="trailing-days",
        ),
        pytest.param(
            "!часы завтра 08:00-17:00",
            "«завтра»: не понимаю: ожидаются дни (пн-пт), часы (08:00-17:00) или пояс",
            id="unknown-word",
        ),
        pytest.param(
            "!часы пн 08:00-17:00 пояс",
            "«пояс»: после этого слова укажите пояс, например Europe/Moscow",
            id="zone-missing",
        ),
        pytest.param(
            "!часы пн 08:00-17:00 пояс Europe/Mars",
            "«Europe/Mars»: «Europe/Mars» — неизвестный часовой пояс"
            " (нужно имя вроде Europe/Moscow)",
            id="zone-unknown",
        ),
    ],
)
def test_bad_commands_say_what_and_where(body: str, russian: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_command(body)
    assert caught.value.russian == russian


NOW = at("2026-09-26 12:00")  # a Saturday


def test_set_saves_and_says_so() -> None:
    outcome = answer(
        parse_command("!часы пн-пт 08:00-17:00") or Command(Action.HELP), None, NOW, MSK
    )
    assert outcome.store == OFFICE
    assert outcome.reply == (
        "Сохранено. Рабочие часы: пн–пт 08:00–17:00 (Europe/Moscow).\n"
        "Сейчас нерабочее время: push-уведомления выключены, включатся с 08:00 пн."
    )


@pytest.mark.parametrize(
    ("command", "current", "stored"),
    [
        pytest.param(
            Command(Action.OFF),
            OFFICE,
            Schedule(MSK, OFFICE.days, enabled=False),
            id="off-keeps-days",
        ),
        pytest.param(
            Command(Action.OFF), None, Schedule(MSK, NO_HOURS, enabled=False), id="off-unset"
        ),
        pytest.param(
            Command(Action.ON), Schedule(MSK, OFFICE.days, enabled=False), OFFICE, id="on-again"
        ),
        pytest.param(
            set_("Asia/Omsk"), OFFICE, Schedule("Asia/Omsk", OFFICE.days), id="zone-keeps-days"
        ),
        pytest.param(
            set_(mon=[r("09:00", "10:00")]),
            YEKATERINBURG,
            Schedule("Asia/Yekaterinburg", week(mon=[r("09:00", "10:00")])),
            id="days-keep-zone",
        ),
    ],
)
def test_changes(command: Command, current: Schedule | None, stored: Schedule) -> None:
    assert answer(command, current, NOW, MSK).store == stored


def test_on_without_hours_is_refused() -> None:
    with pytest.raises(ScheduleError) as caught:
        answer(Command(Action.ON), None, NOW, MSK)
    assert "не задано ни одного рабочего часа" in caught.value.russian


@pytest.mark.parametrize("action", [Action.SHOW, Action.HELP])
def test_questions_change_nothing(action: Action) -> None:
    outcome = answer(Command(action), OFFICE, NOW, MSK)
    assert outcome.store is None
    assert outcome.reply
