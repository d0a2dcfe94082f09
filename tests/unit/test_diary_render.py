"""Every diary message template, rendered with the demo data and with edge cases.

What a parent reads must never say a word twice («каб. каб. 21»): the sources write rooms with
and without «каб.», and the templates must not add a prefix the data already has.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import attrs
import pytest

from bridges.diary.model import Homework, Lesson, LessonStatus, Mark
from bridges.diary.plan import plan
from bridges.diary.render import DEFAULT_TEMPLATES, Rendered, Renderer, bare_room, room_label
from bridges.diary.sources.csvsource import OneRosterCsvSource
from tests.demo import DIARY, demo_folder, noon

MSK = ZoneInfo("Europe/Moscow")
TODAY = date(2026, 11, 23)  # a Monday: the digest has lessons, the changes lie ahead
# The same word (or abbreviation) twice in a row: «каб. каб.», «на на».
DOUBLED = re.compile(r"(?<!\w)(\w+\.?)\s+\1(?!\w)", re.IGNORECASE)


@pytest.mark.parametrize(
    ("room", "label", "bare"),
    [
        ("21", "каб. 21", "21"),
        ("каб. 21", "каб. 21", "21"),
        ("Каб.21", "каб. 21", "21"),
        ("кабинет 21", "каб. 21", "21"),
        ("Кабинет 21а", "каб. 21а", "21а"),
        ("  каб. 305  ", "каб. 305", "305"),
        ("Спортзал", "Спортзал", "Спортзал"),
        ("Актовый зал", "Актовый зал", "Актовый зал"),
        ("Кабина для переговоров", "Кабина для переговоров", "Кабина для переговоров"),
        ("", "", ""),
    ],
)
def test_rooms_are_named_once(room: str, label: str, bare: str) -> None:
    assert room_label(room) == label
    assert bare_room(room) == bare


def lesson(room: str, status: LessonStatus = LessonStatus.NORMAL, note: str = "") -> Lesson:
    return Lesson(
        source_id=f"tt@{room}",
        class_id="5a",
        subject="Математика",
        start=datetime(2026, 11, 24, 8, 30, tzinfo=MSK),
        end=datetime(2026, 11, 24, 9, 15, tzinfo=MSK),
        room=room,
        teacher="Иванова М. С.",
        status=status,
        note=note,
    )


ROOMS = ("", "21", "каб. 21", "кабинет 21", "Спортзал")
MARKS = (
    Mark("r1", "p-5a-1", "5a", "Диктант", "", "5", date(2026, 11, 20)),
    Mark("r2", "p-5a-1", "eng", "Unit 3", "Английский язык", "4-", date(2026, 11, 20), "Good"),
    Mark("r3", "p-5a-1", "5a", "Ответ", "Математика", "н", date(2026, 11, 20), category="Ответ"),
)
HOMEWORK = (
    Homework("h1", "5a", "", "§12, упр. 3–5", date(2026, 11, 24)),
    Homework("h2", "eng", "Английский язык", "Workbook p. 24", date(2026, 11, 24)),
)


def edge_cases(renderer: Renderer) -> list[tuple[str, Rendered]]:
    """Every template with each kind of room, status, subject and comment."""
    lessons = [
        lesson(room, status, note)
        for room in ROOMS
        for status, note in (
            (LessonStatus.NORMAL, ""),
            (LessonStatus.REPLACED, "замена: учитель Петров А. Н."),
            (LessonStatus.CANCELLED, "урок отменён"),
        )
    ]
    out = [("mark", renderer.mark(m)) for m in MARKS]
    out += [("homework", renderer.homework(h)) for h in HOMEWORK]
    out += [("lesson_change", renderer.lesson_change(x)) for x in lessons]
    out += [("digest", renderer.digest(TODAY, lessons))]
    return out


async def demo_posts(renderer: Renderer) -> list[tuple[str, Rendered]]:
    """What the bridge posts for the demo diary at 08:00 on TODAY."""
    source = OneRosterCsvSource(demo_folder(DIARY, TODAY), "demo", clock=noon(TODAY))
    snapshot = await source.snapshot()
    assert snapshot.problems == ()
    now = datetime.combine(TODAY, time(8), MSK)
    names = {"mark": "mark", "homework": "homework", "lesson": "lesson_change", "digest": "digest"}
    return [(names[p.kind], p.rendered) for p in plan(snapshot, renderer, now, time(7, 30))]


def words(rendered: Rendered) -> list[str]:
    """The plain body and the HTML body's text."""
    return [rendered.body, re.sub(r"<[^>]+>", " ", rendered.html)]


async def test_every_template_renders_without_doubled_words() -> None:
    renderer = Renderer()
    rendered = edge_cases(renderer) + await demo_posts(renderer)
    templates = {path.name.split(".")[0] for path in Path(DEFAULT_TEMPLATES).glob("*.j2")}
    assert {name for name, _ in rendered} == templates - {"miniapp"}  # each message template
    for name, message in rendered:
        for text in words(message):
            assert not DOUBLED.search(text), (name, text)
            assert "каб. каб" not in text.lower() and "кабинет каб" not in text.lower()


async def test_the_demo_posts_name_rooms_and_changes_once() -> None:
    posts = dict.fromkeys(("digest", "lesson_change"), "")
    for name, message in await demo_posts(Renderer()):
        if name in posts:
            posts[name] += message.body + "\n"
    assert "Математика, каб. 21" in posts["digest"]  # 5А's Monday, from «каб. 21» in the data
    assert "Замена урока" in posts["lesson_change"] and "Урок отменён" in posts["lesson_change"]
    assert posts["lesson_change"].count("каб. 17") == 3  # the room of both, and the change


def test_a_room_given_bare_or_with_its_prefix_reads_the_same() -> None:
    renderer = Renderer()
    bare, prefixed = lesson("21"), lesson("каб. 21")
    assert renderer.lesson_change(bare) == renderer.lesson_change(
        attrs.evolve(prefixed, source_id=bare.source_id)
    )
    assert renderer.digest(TODAY, [bare]) == renderer.digest(TODAY, [prefixed])
    assert ", каб. 21" in renderer.digest(TODAY, [bare]).body
    assert "каб." not in renderer.digest(TODAY, [lesson("")]).body  # no room: nothing said
