"""The bridge's pure core: where items go, message contents, transaction IDs, config errors."""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, time

import pytest

from bridges.diary.config import parse_config
from bridges.diary.ledger import txn_id
from bridges.diary.matrix import edit_content, marker_of, message_content
from bridges.diary.model import DiarySnapshot, Homework, Lesson, LessonStatus, Mark
from bridges.diary.plan import plan
from bridges.diary.render import Renderer, ru_date
from sferum_shared.config import ConfigError

MSK = zoneinfo.ZoneInfo("Europe/Moscow")
MARK = Mark("r1", "p-5a-1", "5a", "Диктант", "Русский язык", "4", date(2026, 11, 18))
HOMEWORK = Homework("h1", "5a-eng1", "Английский язык", "Упр. 5 <b>", date(2026, 11, 24))


def lesson(n: int, status: LessonStatus = LessonStatus.NORMAL, day: int = 23) -> Lesson:
    start = datetime(2026, 11, day, 8 + n, 0, tzinfo=MSK)
    return Lesson(
        f"l{n}@{day}",
        "5a",
        f"Предмет {n}",
        start,
        start.replace(minute=45),
        room="12",
        status=status,
    )


SNAPSHOT = DiarySnapshot(
    marks=(MARK,),
    homework=(HOMEWORK,),
    lessons=(lesson(2), lesson(1), lesson(3, LessonStatus.CANCELLED), lesson(1, day=24)),
)


def test_each_item_goes_to_its_room() -> None:
    now = datetime(2026, 11, 23, 7, 0, tzinfo=MSK)  # before the digest time
    posts = {p.key: p for p in plan(SNAPSHOT, Renderer(), now, time(7, 30))}
    assert posts["mark:r1"].room_alias == "diary-p-5a-1"
    assert posts["homework:h1"].room_alias == "class-5a-eng1"
    assert posts["lesson:l3@23"].room_alias == "class-5a"  # only changed lessons get a notice
    assert "lesson:l1@23" not in posts
    assert not [k for k in posts if k.startswith("digest:")]


def test_the_digest_comes_after_its_time_with_the_days_lessons_in_order() -> None:
    now = datetime(2026, 11, 23, 7, 30, tzinfo=MSK)
    digest = {p.key: p for p in plan(SNAPSHOT, Renderer(), now, time(7, 30))}[
        "digest:5a:2026-11-23"
    ]
    lines = digest.rendered.body.splitlines()
    assert lines[0] == "🗓 Расписание на пн, 23 ноября:"
    assert [line.split()[2] for line in lines[1:]] == ["Предмет", "Предмет", "Предмет"]
    assert "1. 09:00–09:45 Предмет 1" in lines[1] and "отменён" in lines[3]


def test_html_is_escaped_and_hashes_follow_the_text() -> None:
    posts = {
        p.key: p
        for p in plan(SNAPSHOT, Renderer(), datetime(2026, 11, 23, tzinfo=MSK), time(7, 30))
    }
    assert "&lt;b&gt;" in posts["homework:h1"].rendered.html
    assert "<b>" in posts["homework:h1"].rendered.body  # the plain body is plain text
    changed = DiarySnapshot(
        marks=(Mark("r1", "p-5a-1", "5a", "Диктант", "Русский язык", "5", date(2026, 11, 18)),)
    )
    again = plan(changed, Renderer(), datetime(2026, 11, 23, tzinfo=MSK), time(7, 30))[0]
    assert again.content_hash != posts["mark:r1"].content_hash


def test_contents_carry_the_marker_and_edits_replace_the_original() -> None:
    post = plan(
        DiarySnapshot(marks=(MARK,)), Renderer(), datetime(2026, 11, 23, tzinfo=MSK), time(7, 30)
    )[0]
    content = message_content(post)
    assert marker_of(content) == ("mark:r1", post.content_hash)
    edit = edit_content(post, "$orig")
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$orig"}
    assert edit["body"].startswith("* ") and marker_of(edit) == marker_of(content)
    assert "ru.sferum.diary" not in edit["m.new_content"]


def test_transaction_ids_are_deterministic_per_change() -> None:
    assert txn_id("mark:r1", "h1") == txn_id("mark:r1", "h1")
    assert (
        len({txn_id("mark:r1", "h1"), txn_id("mark:r1", "h2"), txn_id("mark:r1", "h1", "edit")})
        == 3
    )


def test_russian_dates() -> None:
    assert ru_date(date(2026, 11, 27)) == "пт, 27 ноября"


BASE = {
    "homeserver_url": "http://127.0.0.1:8008",
    "server_name": "s",
    "bot_user_id": "@sferum:s",
    "as_token": "t",
    "admin_api_url": "http://127.0.0.1:8008/a",
    "admin_api_secret": "x",
    "database": "/tmp/d.db",
    "sources": ["oneroster-csv:/srv/diary"],
}


def rest_source(**options: object) -> dict[str, object]:
    return {"kind": "oneroster-rest", "location": "https://sis.example/or", **options}


@pytest.mark.parametrize(
    ("change", "key", "fragment"),
    [
        ({"sources": []}, "sources", "non-empty list"),
        ({"sources": ["excel:/x"]}, "sources[0].kind", "must be one of"),
        ({"sources": ["oneroster-rest:ftp://x"]}, "sources[0].location", "http(s) URL"),
        ({"sources": [rest_source(timeout_seconds=0)]}, "sources[0].timeout_seconds", "1 to 300"),
        ({"sources": [rest_source(timeout_seconds="5")]}, "sources[0].timeout_seconds", "'5'"),
        (
            {"sources": [{"kind": "ical", "location": "/x", "timeout_seconds": 5}]},
            "sources[0].timeout_seconds",
            "oneroster-rest only",
        ),
        ({"digest_time": "7:30"}, "digest_time", "HH:MM"),
        ({"timezone": "Mars/Olympus"}, "timezone", "not a time zone"),
        ({"http": {"port": 0}}, "http.port", "port number"),
        ({"colour": 1}, "colour", "unknown key"),
        ({"as_token": ""}, "as_token", "non-empty string"),
    ],
)
def test_config_errors_name_the_key(change: dict[str, object], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, **change})
    assert e.value.key == key and fragment in str(e.value)


def test_rest_credentials_come_from_the_url() -> None:
    config = parse_config(
        {**BASE, "sources": ["oneroster-rest:https://id:s%40cret@sis.example/or"]}
    )
    source = config.sources[0]
    assert (source.location, source.client_id, source.client_secret) == (
        "https://sis.example/or",
        "id",
        "s@cret",
    )


def test_a_rest_source_waits_as_long_as_its_timeout_says() -> None:
    default = parse_config({**BASE, "sources": ["oneroster-rest:https://sis.example/or"]})
    assert default.sources[0].timeout_seconds == 10.0
    slow = parse_config({**BASE, "sources": [rest_source(timeout_seconds=45)]})
    assert slow.sources[0].timeout_seconds == 45.0
