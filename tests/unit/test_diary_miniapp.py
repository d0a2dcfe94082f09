"""The mini-app's pure parts: the widget's state event, and what each view holds."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from bridges.diary.config import BridgeConfig
from bridges.diary.miniapp import (
    MiniApp,
    class_view,
    marks_view,
    widget_rooms,
    widget_state,
)
from bridges.diary.model import DiarySnapshot, Homework, Lesson, LessonStatus, Mark
from sferum_shared import Clock
from sferum_shared.vocabulary import WidgetId
from sferum_shared.web import ApiError

MSK = ZoneInfo("Europe/Moscow")
SNAPSHOT = DiarySnapshot(
    marks=(
        Mark("r1", "p-1", "5a", "Диктант", "Русский язык", "4", date(2026, 11, 18)),
        Mark(
            "r2", "p-1", "5a", "Контрольная №2", "Математика", "5", date(2026, 11, 16), "молодец"
        ),
        Mark("r3", "p-2", "5a", "Контрольная №2", "Математика", "3", date(2026, 11, 16)),
    ),
    homework=(
        Homework("h1", "5a", "Математика", "§12, упр. 3–5", date(2026, 11, 24)),
        Homework("h0", "5a", "Математика", "§11", date(2026, 11, 10)),  # due before the week
        Homework("h2", "6b", "История", "§8", date(2026, 11, 25)),
    ),
    lessons=(
        Lesson(
            "l2",
            "5a",
            "Русский язык",
            datetime(2026, 11, 16, 9, 25, tzinfo=MSK),
            datetime(2026, 11, 16, 10, 10, tzinfo=MSK),
            room="каб. 21",
        ),
        Lesson(
            "l1",
            "5a",
            "Математика",
            datetime(2026, 11, 16, 8, 30, tzinfo=MSK),
            datetime(2026, 11, 16, 9, 15, tzinfo=MSK),
            status=LessonStatus.CANCELLED,
        ),
        Lesson(
            "l9",
            "5a",
            "Математика",
            datetime(2026, 11, 23, 8, 30, tzinfo=MSK),
            datetime(2026, 11, 23, 9, 15, tzinfo=MSK),
        ),  # next week
    ),
)
# Wednesday 18 November 2026, noon in Moscow: the week is the one of Monday 16 November.
WEDNESDAY = Clock.fixed(datetime(2026, 11, 18, 12, 0, tzinfo=ZoneInfo("Europe/Moscow")))
CONFIG = BridgeConfig(
    homeserver_url="http://127.0.0.1:1",
    server_name="school.test",
    bot_user_id="@sferum:school.test",
    as_token="x",
    admin_api_url="http://127.0.0.1:1/a",
    admin_api_secret="y",
    database=":memory:",
    sources=(),
    ical_secret="z" * 32,
)


def test_the_widget_event_points_at_the_page_with_the_clients_template_variables() -> None:
    key, content = widget_state("https://diary.school.test/", "diary", "p-5a/1", "@sferum:s")
    assert key == WidgetId.DIARY == content["id"]
    assert content["type"] == "m.custom" and content["name"] == "Дневник"
    assert content["creatorUserId"] == "@sferum:s"
    assert content["url"].startswith("https://diary.school.test/app?kind=diary&scope=p-5a%2F1&")
    assert "room=$matrix_room_id" in content["url"]
    assert content["waitForIframeLoad"] is True
    with pytest.raises(ValueError):
        widget_state("https://d", "marks", "p-1", "@b:s")


def test_the_widget_goes_to_class_chats_class_news_and_diaries() -> None:
    assert widget_rooms(["5a"], ["p-1"]) == [
        ("class-5a", "class", "5a"),
        ("diary-p-1", "diary", "p-1"),
        ("news-5a", "news", "5a"),
    ]
    state_key, content = widget_state("https://d", "news", "5a", "@b:s")
    assert state_key == WidgetId.DIARY and "kind=news&scope=5a" in content["url"]
    assert content["name"] == "Новости"


def test_marks_are_the_pupils_own_newest_first() -> None:
    marks = marks_view(SNAPSHOT, "p-1")
    assert [m["work"] for m in marks] == ["Диктант", "Контрольная №2"]
    assert marks[1] == {
        "date": "2026-11-16",
        "day": "пн, 16 ноября",
        "subject": "Математика",
        "work": "Контрольная №2",
        "category": "",
        "value": "5",
        "comment": "молодец",
    }
    assert marks_view(SNAPSHOT, "p-9") == []


def test_a_class_view_is_the_weeks_lessons_and_homework_still_due() -> None:
    view = class_view(SNAPSHOT, "5a", date(2026, 11, 16), "Europe/Moscow")
    assert view["week"] == "2026-11-16"
    assert [h["text"] for h in view["homework"]] == ["§12, упр. 3–5"]
    assert [(lesson["start"], lesson["cancelled"]) for lesson in view["lessons"]] == [
        ("08:30", True),
        ("09:25", False),
    ]


class FakeMiniApp(MiniApp):
    """The HTTP glue with the homeserver and the directory replaced by tables."""

    tokens: ClassVar[dict[str, str]] = {
        "good-pupil": "@pupil:school.test",
        "good-guardian": "@mum:school.test",
    }
    directory: ClassVar[dict[str, dict[str, Any]]] = {
        "@pupil:school.test": {
            "person": "p-1",
            "roles": ["student"],
            "org_ids": ["s"],
            "student_class_ids": ["5a"],
        },
        "@mum:school.test": {
            "person": "g-1",
            "roles": ["guardian"],
            "child_ids": ["p-1"],
            "child_class_ids": ["5a"],
        },
        "p-1": {"person": "p-1", "roles": ["student"], "student_class_ids": ["5a"]},
        "p-2": {"person": "p-2", "roles": ["student"], "student_class_ids": ["5a"]},
    }

    async def check_openid(self, openid: Any) -> str:
        if not isinstance(openid, dict) or openid.get("access_token") not in self.tokens:
            raise ApiError(401, "M_UNKNOWN_TOKEN", "bad token")
        return self.tokens[openid["access_token"]]

    async def who(self, query: dict[str, str]) -> dict[str, Any]:
        key = query.get("user_id") or query.get("person") or ""
        return self.directory.get(key, {"person": None})

    async def news(self, class_id: str) -> list[dict[str, Any]]:
        return [{"title": f"news of {class_id}"}]


class NoRooms:
    async def resolve(self, alias_localpart: str) -> None:
        return None


@pytest.mark.parametrize(
    ("token", "kind", "scope", "status"),
    [
        ("good-pupil", "diary", "p-1", 200),
        ("good-guardian", "diary", "p-1", 200),
        ("good-pupil", "diary", "p-2", 403),
        ("good-guardian", "diary", "p-2", 403),
        ("forged", "diary", "p-1", 401),
        ("good-pupil", "class", "5a", 200),
        ("good-guardian", "class", "5a", 200),
        ("good-pupil", "class", "6b", 403),
        ("good-guardian", "news", "5a", 200),
        ("good-guardian", "news", "6b", 403),
        ("forged", "news", "5a", 401),
        ("good-pupil", "marks", "p-1", 400),
    ],
)
async def test_the_view_answers_by_the_rules(
    token: str, kind: str, scope: str, status: int
) -> None:
    app = FakeMiniApp(CONFIG, lambda: SNAPSHOT, WEDNESDAY, NoRooms())
    body = {"openid": {"access_token": token}, "kind": kind, "scope": scope}
    try:
        view = await app.view(body)
    except ApiError as e:
        assert e.status == status
        return
    assert status == 200
    if kind == "diary":
        assert {m["value"] for m in view["marks"]} == {"4", "5"}
    elif kind == "news":
        assert view["articles"] == [{"title": "news of 5a"}]
    else:
        assert view["week"] == "2026-11-16" and len(view["lessons"]) == 2
        assert view["ical"].startswith("/ical/5a/")


async def test_openid_of_another_server_is_refused_before_any_request() -> None:
    app = MiniApp(CONFIG, lambda: SNAPSHOT, WEDNESDAY, NoRooms())
    for openid in (
        None,
        {},
        {"access_token": "t", "matrix_server_name": "evil.test"},
        {"access_token": "", "matrix_server_name": "school.test"},
    ):
        with pytest.raises(ApiError) as e:
            await app.check_openid(openid)
        assert e.value.status == 401
