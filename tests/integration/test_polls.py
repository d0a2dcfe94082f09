"""Polls in the demo school on real Synapse (SQLite and PostgreSQL): who may start and end one in
each kind of room, and the result the platform posts, counted over a school news poll's copies.
A guardian's poll goes through mautrix-python, a client we did not write."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from sferum_shared import matrix
from tests.integration.clients import User
from tests.integration.conftest import SERVER, School

pytestmark = pytest.mark.integration

POLL_RESULT = "ru.sferum.poll_result"


@pytest.fixture
def school(demo_school: School) -> School:
    return demo_school


def first(items: set[str]) -> str:
    return sorted(items)[0]


def poll_start(question: str, *answers: str) -> dict[str, Any]:
    """A poll's start as Element and Element X send it."""
    return {
        matrix.TEXT: question,
        "body": question,
        matrix.POLL_START: {
            "kind": matrix.POLL_DISCLOSED,
            "max_selections": 1,
            "question": {matrix.TEXT: question},
            "answers": [{"id": f"a{i}", matrix.TEXT: text} for i, text in enumerate(answers)],
        },
    }


def response(poll_id: str, *answer_ids: str) -> dict[str, Any]:
    return {
        matrix.POLL_RESPONSE: {"answers": list(answer_ids)},
        "m.relates_to": {"rel_type": "m.reference", "event_id": poll_id},
    }


def end(poll_id: str) -> dict[str, Any]:
    return {
        matrix.POLL_END: {},
        matrix.TEXT: "Опрос завершён",
        "body": "Опрос завершён",
        "m.relates_to": {"rel_type": "m.reference", "event_id": poll_id},
    }


async def until_event(
    user: User, room_id: str, match: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """The newest event of the room's last 50 that `match`es, waited for."""
    path = f"/rooms/{urllib.parse.quote(room_id)}/messages?dir=b&limit=50"
    for _ in range(150):
        reply = await user.call("GET", path)
        assert reply.status == 200, reply
        for event in reply.body.get("chunk", []):
            if match(event):
                return dict(event)
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {what} in {room_id}")


async def result_of(user: User, room_id: str, poll_in_room: str) -> dict[str, Any]:
    """The platform's result message about a poll: a reply to it, with the counts."""
    event = await until_event(
        user,
        room_id,
        lambda e: e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        == poll_in_room
        and POLL_RESULT in e["content"],
        "poll result",
    )
    assert event["sender"] == f"@sferum:{SERVER}" and event["content"]["msgtype"] == "m.notice"
    return event


async def test_who_may_start_a_poll_follows_the_kind_of_room(school: School) -> None:
    roster = school.roster
    pupil = await school.login(sorted(roster.students["5a"])[0])
    teacher = await school.login(first(roster.teachers["5a"]))
    class_chat = await pupil.resolve(school.alias("class", "5a"))

    # The power levels say it, so that clients hide the button from pupils.
    levels = await teacher.call("GET", f"/rooms/{class_chat}/state/{matrix.POWER_LEVELS}/")
    assert levels.body["events"][matrix.POLL_START] == 50, levels

    refused = await pupil.send(class_chat, matrix.POLL_START, poll_start("Отменим урок?", "Да"))
    assert (refused.status, refused.body.get("errcode")) == (403, "M_FORBIDDEN"), refused
    allowed = await teacher.send(class_chat, matrix.POLL_START, poll_start("Экскурсия?", "Да"))
    assert allowed.status == 200, allowed

    # A guardian is a reader of the class news: no poll there, but a vote on the teacher's.
    guardian = await school.login(first(roster.guardians_of(sorted(roster.students["5a"])[0])))
    news = await guardian.resolve(school.alias("news", "5a"))
    refused = await guardian.send(news, matrix.POLL_START, poll_start("Родительский?", "Да"))
    assert (refused.status, refused.body.get("errcode")) == (403, "M_FORBIDDEN"), refused
    poll = await teacher.send(news, matrix.POLL_START, poll_start("Форма на празднике?", "Белая"))
    assert poll.status == 200, poll
    vote = await guardian.send(news, matrix.POLL_RESPONSE, response(poll.body["event_id"], "a0"))
    assert vote.status == 200, vote

    # Not in the staff room for a teacher: it is the staff's.
    staff_room = await teacher.resolve(f"#staff-school-1:{SERVER}")
    refused = await teacher.send(staff_room, matrix.POLL_START, poll_start("Субботник?", "Да"))
    assert refused.status == 403, refused


async def test_a_guardians_poll_in_the_parents_chat_ends_with_its_result(school: School) -> None:
    """mautrix-python starts the poll; the votes are counted as MSC3381 says (the latest of
    each voter); only its author ends it, and the result comes as text for every client."""
    from mautrix.types import EventType

    roster = school.roster
    pupil_a, pupil_b = sorted(roster.students["5a"])[:2]
    author_id, other_id = first(roster.guardians_of(pupil_a)), first(roster.guardians_of(pupil_b))
    assert author_id != other_id
    async with school.mautrix(author_id) as client:
        parents = (await client.resolve_room_alias(school.alias("parents", "5a"))).room_id
        poll_id = await client.send_message_event(
            parents,
            EventType.find(matrix.POLL_START, EventType.Class.MESSAGE),
            poll_start("Когда собрание?", "Во вторник", "В четверг"),
        )
    author, other = await school.login(author_id), await school.login(other_id)
    for voter, answer in ((author, "a0"), (other, "a1"), (author, "a1")):
        sent = await voter.send(parents, matrix.POLL_RESPONSE, response(poll_id, answer))
        assert sent.status == 200, sent

    # A guardian of another class answers, and "ends" it, from their own parents chat: the
    # poll is not theirs to see, and neither gets in (Synapse refuses relations across rooms;
    # the counter would not count them either).
    outsider = await school.login(first(roster.guardians_of(sorted(roster.students["6b"])[0])))
    parents_6b = await outsider.resolve(school.alias("parents", "6b"))
    for event_type, content in (
        (matrix.POLL_RESPONSE, response(poll_id, "a0")),
        (matrix.POLL_END, end(poll_id)),
    ):
        sent = await outsider.send(parents_6b, event_type, content)
        assert sent.status in (400, 403), sent

    refused = await other.send(parents, matrix.POLL_END, end(poll_id))
    assert (refused.status, refused.reason) == (403, "ru.sferum.poll_not_own"), refused
    ended = await author.send(parents, matrix.POLL_END, end(poll_id))
    assert ended.status == 200, ended

    result = await result_of(other, parents, poll_id)
    assert result["content"][POLL_RESULT] == {
        "poll": poll_id,
        "answers": {"a0": 0, "a1": 2},
        "voters": 2,
    }
    assert result["content"]["body"] == (
        "Опрос завершён: «Когда собрание?»\nВо вторник — 0 голосов\nВ четверг — 2 голоса\n"
        "Проголосовали: 2 человека"
    )
    # A second end changes nothing: one result.
    again = await author.send(parents, matrix.POLL_END, end(poll_id))
    assert again.status == 200, again
    await asyncio.sleep(1)
    chunk = (await other.call("GET", f"/rooms/{parents}/messages?dir=b&limit=50")).body["chunk"]
    assert sum(POLL_RESULT in e["content"] for e in chunk) == 1


async def test_a_school_news_poll_counts_the_votes_of_every_class_together(
    school: School,
) -> None:
    roster = school.roster
    staff = await school.login(roster.of_role("administrator")[0])
    teacher_5a = await school.login(first(roster.teachers["5a"]))
    parent_5a = await school.login(first(roster.guardians_of(sorted(roster.students["5a"])[0])))
    parent_6b = await school.login(first(roster.guardians_of(sorted(roster.students["6b"])[0])))
    news = await staff.resolve(f"#news-school-school-1:{SERVER}")
    news_5a = await parent_5a.resolve(school.alias("news", "5a"))
    news_6b = await parent_6b.resolve(school.alias("news", "6b"))

    poll = await staff.send(news, matrix.POLL_START, poll_start("Ёлка в пятницу?", "Да", "Нет"))
    assert poll.status == 200, poll
    poll_id = poll.body["event_id"]

    def copy_of(event: dict[str, Any]) -> bool:
        mirror = event["content"].get("ru.sferum.mirror_of", {})
        return bool(event["type"] == matrix.POLL_START and mirror.get("event_id") == poll_id)

    copy_5a = (await until_event(parent_5a, news_5a, copy_of, "copy of the poll"))["event_id"]
    copy_6b = (await until_event(parent_6b, news_6b, copy_of, "copy of the poll"))["event_id"]
    for voter, room_id, poll_in_room, answer in (
        (parent_5a, news_5a, copy_5a, "a0"),
        (parent_6b, news_6b, copy_6b, "a0"),
        (teacher_5a, news, poll_id, "a1"),
    ):
        sent = await voter.send(room_id, matrix.POLL_RESPONSE, response(poll_in_room, answer))
        assert sent.status == 200, sent
    # Votes are each room's own: none is copied into the classes' news.
    await asyncio.sleep(1)
    chunk = (await parent_6b.call("GET", f"/rooms/{news_6b}/messages?dir=b&limit=20")).body
    assert not [e for e in chunk["chunk"] if e["type"] == matrix.POLL_RESPONSE
                and e["sender"] != parent_6b.user_id]  # fmt: skip

    # A class's copy is closed with the original, not on its own.
    refused = await teacher_5a.send(news_5a, matrix.POLL_END, end(copy_5a))
    assert (refused.status, refused.reason) == (403, "ru.sferum.poll_mirrored"), refused
    ended = await staff.send(news, matrix.POLL_END, end(poll_id))
    assert ended.status == 200, ended

    expected = {"poll": poll_id, "answers": {"a0": 2, "a1": 1}, "voters": 3}
    for user, room_id, poll_in_room in (
        (staff, news, poll_id),
        (parent_5a, news_5a, copy_5a),
        (parent_6b, news_6b, copy_6b),
    ):
        result = await result_of(user, room_id, poll_in_room)
        assert result["content"][POLL_RESULT] == expected, room_id
    # The copies end too, so that clients show them closed.
    closed = await until_event(
        parent_6b,
        news_6b,
        lambda e: e["type"] == matrix.POLL_END
        and e["content"].get("m.relates_to", {}).get("event_id") == copy_6b,
        "end of the copy",
    )
    assert closed["sender"] == f"@sferum:{SERVER}"
