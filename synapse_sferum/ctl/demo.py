"""The demo school's data, dated relative to the day it is written (`sferumctl demo-data`).

`synapse_sferum/demo/` holds the demo as templates and never a date: `roster/` is the OneRoster
roster the module imports, `gradebook/` the diary's marks, homework and timetable, `news/` the
article the demo pins in the school news (`sferumctl news post`). A school's SIS
exports both in one folder, so the diary source gets the roster's files and the gradebook's
(whose manifest marks the gradebook files present). Files named `*.j2` are jinja2 templates
written with the helpers of `DemoCalendar`; the others are copied as they are. Every run of
`scripts/demo`, and every test, renders them for its own day: the timetable always covers this
week, marks are from the last two weeks and homework is due in the coming school days.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from datetime import date, timedelta
from importlib.resources.abc import Traversable
from pathlib import Path

import attrs
import jinja2

from synapse_sferum.ctl.demo_stickers import demo_stickers

#: Inside the package, so that an installed sferumctl finds them as a checkout's does.
DEMO_TEMPLATES = importlib.resources.files("synapse_sferum") / "demo"
#: The demo school's time zone: its day is the one the data is dated by.
DEMO_TIMEZONE = "Europe/Moscow"
ROSTER = "roster"
DIARY = "diary"
STICKERS = "stickers"
NEWS = "news"
_GRADEBOOK = "gradebook"
_TEMPLATE_SUFFIX = ".j2"
_MONTHS = (
    "января", "февраля", "марта", "апреля", "мая", "июня",
    "июля", "августа", "сентября", "октября", "ноября", "декабря",
)  # fmt: skip


def ru_date(day: date) -> str:
    """«3 марта»: a date as a Russian text writes it, without the year."""
    return f"{day.day} {_MONTHS[day.month - 1]}"


@attrs.frozen
class SchoolYear:
    """The school year `today` falls in: 1 September to 31 May (the summer belongs to the year
    that ended, as diaries keep showing it until the next one starts)."""

    start: date
    end: date

    @classmethod
    def of(cls, today: date) -> SchoolYear:
        first_year = today.year if today.month >= 9 else today.year - 1
        return cls(date(first_year, 9, 1), date(first_year + 1, 5, 31))

    @property
    def title(self) -> str:
        return f"{self.start.year}/{self.end.year} учебный год"


@attrs.frozen
class DemoCalendar:
    """The dates the demo's templates are written in, all relative to `today`."""

    today: date

    def school_day(self, n: int) -> date:
        """The n-th school day (Monday to Friday) after today, or before it for negative n."""
        if n == 0:
            raise ValueError("school_day(0) is ambiguous on a weekend: count from 1 or -1")
        step = 1 if n > 0 else -1
        day, left = self.today, abs(n)
        while left:
            day += timedelta(days=step)
            if day.weekday() < 5:
                left -= 1
        return day

    def monday(self, weeks: int, weekday: int = 0) -> date:
        """The Monday `weeks` weeks from this week's (plus `weekday` days: 4 is its Friday)."""
        this_monday = self.today - timedelta(days=self.today.weekday())
        return this_monday + timedelta(weeks=weeks, days=weekday)

    def born(self, age: int, month: int, day: int) -> date:
        """The birth date, on `day`.`month`, of someone who is `age` years old today.

        29 February is refused: on 28 February of a common year nobody born that day has
        the age they will have the next morning, so the demo could not keep it exact.
        """
        if (month, day) == (2, 29):
            raise ValueError("born(): 29 February has no birthday in most years; pick another")
        had_birthday = (self.today.month, self.today.day) >= (month, day)
        return date(self.today.year - age - (0 if had_birthday else 1), month, day)


def _environment(templates: Traversable) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: templates.joinpath(name).read_text(encoding="utf-8")
        ),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ics"] = lambda day: day.strftime("%Y%m%d")
    env.filters["ru_date"] = ru_date
    return env


def _render_folder(templates: Traversable, folder: str, today: date) -> dict[str, bytes]:
    env = _environment(templates)
    calendar = DemoCalendar(today)
    context = {
        "today": today,
        "year": SchoolYear.of(today),
        "school_day": calendar.school_day,
        "monday": calendar.monday,
        "born": calendar.born,
    }
    files: dict[str, bytes] = {}
    for path in sorted(templates.joinpath(folder).iterdir(), key=lambda p: p.name):
        if not path.name.endswith(_TEMPLATE_SUFFIX):
            files[path.name] = path.read_bytes()
            continue
        name = path.name.removesuffix(_TEMPLATE_SUFFIX)
        text = env.get_template(f"{folder}/{path.name}").render(context)
        if name.endswith(".ics"):
            text = text.replace("\n", "\r\n")  # RFC 5545 lines end with CRLF
        files[name] = text.encode("utf-8")
    return files


def demo_files(
    part: str, today: date, templates: Traversable = DEMO_TEMPLATES
) -> dict[str, bytes]:
    """The files of the demo's `roster`, `diary` (roster and gradebook) or `news`, dated for
    `today`."""
    if part == NEWS:
        return _render_folder(templates, NEWS, today)
    roster = _render_folder(templates, ROSTER, today)
    if part == ROSTER:
        return roster
    if part == DIARY:
        return {**roster, **_render_folder(templates, _GRADEBOOK, today)}
    raise ValueError(f"no demo part {part!r}: it is {ROSTER!r}, {DIARY!r} or {NEWS!r}")


def write_files(folder: Path, files: Mapping[str, bytes]) -> Path:
    """Writes `files` into `folder` (made if missing; files of other names are left alone)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def write_demo(
    dest: Path, today: date, templates: Traversable = DEMO_TEMPLATES
) -> dict[str, Path]:
    """Writes `dest/roster`, `dest/diary` and `dest/news` for `today`, and the sticker pack
    into `dest/stickers`; returns the four folders."""
    written = {
        part: write_files(dest / part, demo_files(part, today, templates))
        for part in (ROSTER, DIARY, NEWS)
    }
    return {**written, STICKERS: write_files(dest / STICKERS, demo_stickers())}
