"""Messages from jinja2 templates (Russian by default): a plain body and an HTML body.

Templates live in `templates/` beside this file; a deployment may point `templates_dir` at its
own copies. HTML templates are autoescaped: diary text never becomes markup.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

import attrs
import jinja2

from bridges.diary.model import Homework, Lesson, Mark

DEFAULT_TEMPLATES = Path(__file__).parent / "templates"
_MONTHS = (
    "января", "февраля", "марта", "апреля", "мая", "июня",
    "июля", "августа", "сентября", "октября", "ноября", "декабря",
)  # fmt: skip
_WEEKDAYS = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")
_MARK_ICONS = {"5": "🟢", "4": "🔵", "3": "🟡", "2": "🔴"}


def ru_date(day: date | datetime) -> str:
    """«пт, 27 ноября»: how a diary writes a day."""
    return f"{_WEEKDAYS[day.weekday()]}, {day.day} {_MONTHS[day.month - 1]}"


def hhmm(moment: datetime) -> str:
    return moment.strftime("%H:%M")


# How diaries write "room" before a room's number: «каб. 21», «Каб.21», «кабинет 21».
_ROOM_PREFIX = re.compile(r"^\s*(?:кабинет|каб)\b\.?\s*", re.IGNORECASE)


def bare_room(room: str) -> str:
    """The room without a «каб.» its source may or may not write: «21», «Спортзал»."""
    return _ROOM_PREFIX.sub("", room).strip()


def room_label(room: str) -> str:
    """How a message names the room: «каб. 21» for a numbered room, a named one as it is
    («Спортзал»); the same whether the source wrote «21», «каб. 21» or «кабинет 21»."""
    bare = bare_room(room)
    return f"каб. {bare}" if bare[:1].isdigit() else bare


@attrs.frozen
class Rendered:
    body: str
    html: str


class Renderer:
    def __init__(self, templates_dir: Path = DEFAULT_TEMPLATES):
        loader = jinja2.FileSystemLoader(str(templates_dir))
        self._text = jinja2.Environment(
            loader=loader, autoescape=False, undefined=jinja2.StrictUndefined
        )
        self._html = jinja2.Environment(
            loader=loader, autoescape=True, undefined=jinja2.StrictUndefined
        )
        for env in (self._text, self._html):
            env.filters["ru_date"] = ru_date
            env.filters["hhmm"] = hhmm
            env.filters["room"] = room_label

    def _render(self, name: str, **context: object) -> Rendered:
        body = self._text.get_template(f"{name}.txt.j2").render(context).strip()
        html = self._html.get_template(f"{name}.html.j2").render(context).strip()
        return Rendered(body, html)

    def mark(self, mark: Mark) -> Rendered:
        return self._render("mark", mark=mark, icon=_MARK_ICONS.get(mark.value[:1], "📝"))

    def homework(self, homework: Homework) -> Rendered:
        return self._render("homework", homework=homework)

    def lesson_change(self, lesson: Lesson) -> Rendered:
        return self._render("lesson_change", lesson=lesson)

    def digest(self, day: date, lessons: list[Lesson]) -> Rendered:
        return self._render("digest", day=day, lessons=lessons)
