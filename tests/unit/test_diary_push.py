"""The push source: signatures, replays, malformed bodies and items, durable storage, and the
snapshot, through aiohttp's test server with a real bridge `Database` on a temporary SQLite."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridges.diary import metrics
from bridges.diary.db import Database
from bridges.diary.model import Homework, Lesson, LessonStatus, Mark
from bridges.diary.sources.push import (
    PUSH_SCHEMA,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    MalformedPush,
    PushSource,
    check_signature,
    item_from_json,
    item_to_json,
    parse_push,
    sign,
)
from sferum_shared import ManualClock

SECRET = "push-secret"
NAME = "push:test"
MSK = timezone(timedelta(hours=3))
NOW = 1_800_000_000.0

MARK = {"id": "m1", "student_id": "p-5a-1", "class_id": "5a", "work": "Диктант",
        "value": "5", "work_date": "2026-11-18", "subject": "Русский язык",
        "comment": "Молодец", "category": "Диктант"}  # fmt: skip
HOMEWORK = {"id": "h1", "class_id": "5a", "text": "§12, упр. 3–5", "due": "2026-11-24",
            "assigned": "2026-11-20", "subject": "Математика"}  # fmt: skip
LESSON = {"id": "l1", "class_id": "5a", "subject": "Математика",
          "start": "2026-11-23T08:30:00+03:00", "end": "2026-11-23T09:15:00+03:00",
          "room": "каб. 21", "teacher": "Иванова М. С.", "status": "replaced",
          "note": "замена"}  # fmt: skip


# -- pure parts ---------------------------------------------------------------------------------


def test_signature() -> None:
    body = b'{"id": "r1"}'
    good = sign(SECRET, "1800000000", body)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert check_signature(SECRET, "1800000000", good, body, NOW) is None
    assert check_signature(SECRET, "1800000000", good, body, NOW + 300) is None
    refusals = {
        "other body": check_signature(SECRET, "1800000000", good, body + b" ", NOW),
        "other secret": check_signature("x", "1800000000", good, body, NOW),
        "re-dated": check_signature(SECRET, "1800000001", good, body, NOW),
        "stale": check_signature(SECRET, "1800000000", good, body, NOW + 301),
        "future": check_signature(
            SECRET, "1800000400", sign(SECRET, "1800000400", body), body, NOW
        ),
        "no headers": check_signature(SECRET, None, None, body, NOW),
        "not seconds": check_signature(SECRET, "soon", good, body, NOW),
        "no secret": check_signature("", "1800000000", good, body, NOW),
    }
    assert all(refusals.values()), refusals
    assert "301 s off" in str(refusals["stale"])


def test_items_round_trip() -> None:
    mark = item_from_json("mark", MARK)
    assert mark == Mark("m1", "p-5a-1", "5a", "Диктант", "Русский язык", "5",
                        date(2026, 11, 18), "Молодец", "Диктант")  # fmt: skip
    homework = item_from_json("homework", HOMEWORK)
    assert homework == Homework("h1", "5a", "Математика", "§12, упр. 3–5", date(2026, 11, 24),
                                date(2026, 11, 20))  # fmt: skip
    lesson = item_from_json("lesson", LESSON)
    assert lesson == Lesson("l1", "5a", "Математика", datetime(2026, 11, 23, 8, 30, tzinfo=MSK),
                            datetime(2026, 11, 23, 9, 15, tzinfo=MSK), "каб. 21",
                            "Иванова М. С.", LessonStatus.REPLACED, "замена")  # fmt: skip
    for kind, item in (("mark", mark), ("homework", homework), ("lesson", lesson)):
        assert item_from_json(kind, item_to_json(item)) == item
    minimal = item_from_json("homework", {"id": "h", "class_id": "c", "text": "t",
                                          "due": "2026-01-01"})  # fmt: skip
    assert minimal.subject == "" and minimal.assigned is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kind", "change", "field", "says"),
    [
        ("mark", {"value": None}, "value", "is required"),
        ("mark", {"value": " "}, "value", "is empty"),
        ("mark", {"value": 5}, "value", "is a number, not a string"),
        ("mark", {"work_date": "18.11.2026"}, "work_date", "not a date such as 2026-11-23"),
        ("mark", {"grade": "5"}, "grade", "is not a mark field"),
        ("lesson", {"start": "2026-11-23T08:30:00"}, "start", "has no UTC offset"),
        ("lesson", {"end": "2026-11-23T08:00:00+03:00"}, "end", "is not after start"),
        ("lesson", {"status": "moved"}, "status", "is not one of normal, replaced, cancelled"),
    ],
)
def test_bad_items(kind: str, change: dict[str, Any], field: str, says: str) -> None:
    base = {"mark": MARK, "lesson": LESSON}[kind]
    obj = {k: v for k, v in {**base, **change}.items() if v is not None}
    request = parse_push(json.dumps({"id": "r", f"{kind}s": [obj]}).encode())
    assert request.items == ()
    [(where, message)] = request.problems
    assert where == f"{kind}s[0].{field}"
    assert says in message


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"{not json", "body"),
        (b"[]", "body"),
        (b'{"marks": []}', "id"),
        (b'{"id": ""}', "id"),
        (b'{"id": "r", "marks": {}}', "marks"),
        (b'{"id": "r", "deleted": "mark:1"}', "deleted"),
        (b'{"id": "r", "grades": []}', "grades"),
        (b'{"id": "\xff"}', "body"),  # not UTF-8
    ],
)
def test_malformed_bodies(body: bytes, where: str) -> None:
    with pytest.raises(MalformedPush) as err:
        parse_push(body)
    assert err.value.where == where


def test_parse_push_keeps_good_entries_and_the_last_of_a_key() -> None:
    request = parse_push(
        json.dumps(
            {
                "id": "r1",
                "marks": [MARK, "junk", {**MARK, "value": "4"}],
                "deleted": ["homework:h0", "grade:1", 7, "mark:"],
            }
        ).encode()
    )
    assert [m.value for m in request.items] == ["4"]  # type: ignore[union-attr]
    assert request.deleted == ("homework:h0",)
    assert [w for w, _ in request.problems] == [
        "deleted[1]", "deleted[2]", "deleted[3]", "marks[1]"
    ]  # fmt: skip


# -- the endpoint and the source ----------------------------------------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(str(tmp_path / "bridge.db"), [PUSH_SCHEMA])
    await database.open()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.fromtimestamp(NOW, UTC))


@pytest.fixture
async def client(db: Database, clock: ManualClock) -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application()
    app.add_routes(PushSource(db, NAME, clock).routes(SECRET))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def push(
    client: TestClient[Any, Any],
    body: object,
    *,
    secret: str = SECRET,
    timestamp: float = NOW,
    raw: bytes | None = None,
) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
    stamp = str(int(timestamp))
    headers = {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, data),
               "Content-Type": "application/json"}  # fmt: skip
    response = await client.post("/push", data=data, headers=headers)
    return response.status, await response.json()


def problems(kind: str) -> float:
    labels = {"source": NAME, "kind": kind}
    return metrics.REGISTRY.get_sample_value("diary_source_problems_total", labels) or 0.0


async def test_push_is_stored_and_snapshotted(client: TestClient[Any, Any], db: Database) -> None:
    source = PushSource(db, NAME, ManualClock(datetime.fromtimestamp(NOW, UTC)))
    assert await source.changed()  # nothing read yet
    empty = await source.snapshot()
    assert empty.marks == () and empty.complete and not await source.changed()

    status, answer = await push(
        client, {"id": "r1", "marks": [MARK], "homework": [HOMEWORK], "lessons": [LESSON]}
    )
    assert (status, answer) == (200, {"id": "r1", "accepted": 3, "deleted": 0, "problems": []})
    assert await source.changed()
    snapshot = await source.snapshot()
    assert snapshot.marks == (item_from_json("mark", MARK),)
    assert snapshot.homework == (item_from_json("homework", HOMEWORK),)
    assert snapshot.lessons == (item_from_json("lesson", LESSON),)
    assert snapshot.complete and snapshot.problems == () and snapshot.roster_zip is None
    assert not await source.changed()

    # an edit and a deletion: the snapshot is complete, so the mark's absence deletes it
    status, answer = await push(
        client,
        {"id": "r2", "homework": [{**HOMEWORK, "text": "§13"}], "deleted": ["mark:m1"]},
    )
    assert status == 200 and answer["deleted"] == 1
    snapshot = await source.snapshot()
    assert snapshot.marks == ()
    assert [h.text for h in snapshot.homework] == ["§13"]
    assert len(snapshot.lessons) == 1


async def test_items_survive_a_restart(tmp_path: Path, clock: ManualClock) -> None:
    path = str(tmp_path / "bridge.db")
    first = Database(path, [PUSH_SCHEMA])
    await first.open()
    app = web.Application()
    app.add_routes(PushSource(first, NAME, clock).routes(SECRET))
    async with TestClient(TestServer(app)) as test_client:
        assert (await push(test_client, {"id": "r1", "marks": [MARK]}))[0] == 200
    await first.close()
    second = Database(path, [PUSH_SCHEMA])
    await second.open()
    try:
        assert len((await PushSource(second, NAME, clock).snapshot()).marks) == 1
    finally:
        await second.close()


async def test_bad_signatures_are_refused(
    client: TestClient[Any, Any], db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    before = problems("signature")
    body = {"id": "r1", "marks": [MARK]}
    with caplog.at_level(logging.ERROR):
        assert (await push(client, body, secret="wrong"))[0] == 401
        assert (await push(client, body, timestamp=NOW - 301))[0] == 401
        response = await client.post("/push", json=body)  # unsigned
        assert response.status == 401
    assert problems("signature") - before == 3
    assert "does not match the body" in caplog.text
    assert (await PushSource(db, NAME, clock).snapshot()).marks == ()
    # nothing was used up: the genuine request still goes through
    assert (await push(client, body))[0] == 200


async def test_replays_are_refused(
    client: TestClient[Any, Any], db: Database, clock: ManualClock
) -> None:
    before = problems("replay")
    assert (await push(client, {"id": "r1", "marks": [MARK]}))[0] == 200
    assert (await push(client, {"id": "r2", "deleted": ["mark:m1"]}))[0] == 200
    status, answer = await push(client, {"id": "r1", "marks": [MARK]})  # re-signed, same id
    assert status == 409 and answer["where"] == "r1"
    assert problems("replay") - before == 1
    assert (await PushSource(db, NAME, clock).snapshot()).marks == ()  # the deletion stands
    # the very same bytes and headers later: refused by the timestamp (ids are pruned by then)
    clock.advance(3 * 300 + 1)
    assert (await push(client, {"id": "r1", "marks": [MARK]}, timestamp=NOW))[0] == 401


async def test_malformed_body_is_400_and_stores_nothing(
    client: TestClient[Any, Any], db: Database
) -> None:
    before = problems("invalid")
    status, answer = await push(client, None, raw=b'{"id": "r1", "marks": {"m1": {}}}')
    assert status == 400
    assert answer == {"where": "marks", "error": "is an object, not a list"}
    assert problems("invalid") - before == 1
    # the id was not used up
    assert (await push(client, {"id": "r1", "marks": [MARK]}))[0] == 200


async def test_bad_items_are_problems_and_the_rest_is_stored(
    client: TestClient[Any, Any], db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    before = problems("invalid")
    good = {**MARK, "id": "m2"}
    with caplog.at_level(logging.ERROR):
        status, answer = await push(
            client,
            {"id": "r1", "marks": [{**MARK, "value": 5}, good], "lessons": [{"id": "l"}]},
        )
    assert status == 200 and answer["accepted"] == 1
    assert [p["where"] for p in answer["problems"]] == ["marks[0].value", "lessons[0].class_id"]
    assert problems("invalid") - before == 2
    assert "push r1: marks[0].value" in caplog.text
    snapshot = await PushSource(db, NAME, clock).snapshot()
    assert snapshot.marks == (item_from_json("mark", good),)
    assert snapshot.lessons == ()
