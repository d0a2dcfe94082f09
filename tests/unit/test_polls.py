"""Polls: who starts and ends them in each kind of room, and how the votes are counted."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from sferum_shared import matrix
from sferum_shared.rooms import RoomKey, RoomKind
from synapse_sferum import policy
from synapse_sferum.policy import polls
from synapse_sferum.policy.room_kinds import EVERYONE, MODERATOR, PLATFORM

TEACHER, GUARDIAN, PUPIL, BOT = "@t:s", "@g:s", "@p:s", "@sferum:s"


def room(kind: RoomKind) -> policy.ProvisionedRoom:
    return policy.ProvisionedRoom(key=RoomKey(kind, "5a"), desired_members=frozenset())


@pytest.mark.parametrize(
    ("kind", "level", "allowed"),
    [
        (RoomKind.CLASS_CHAT, EVERYONE, False),  # a pupil in the class chat
        (RoomKind.CLASS_CHAT, MODERATOR, True),  # a teacher
        (RoomKind.CLASS_NEWS, MODERATOR, True),
        (RoomKind.CLASS_NEWS, EVERYONE, False),  # a guardian reads the news and votes there
        (RoomKind.MEETING, MODERATOR, True),  # the class teacher
        (RoomKind.MEETING, EVERYONE, False),
        (RoomKind.PARENTS, EVERYONE, True),  # any guardian
        (RoomKind.STAFF, MODERATOR, True),  # the school's staff
        (RoomKind.STAFF, EVERYONE, False),
        (RoomKind.SCHOOL_NEWS, EVERYONE, True),  # whoever posts the school's news
        (RoomKind.DIARY, EVERYONE, False),
        (RoomKind.DIARY, MODERATOR, False),
        (RoomKind.BROADCAST, MODERATOR, False),
        (RoomKind.CLASS_SPACE, MODERATOR, False),
    ],
)
def test_who_starts_a_poll_in_each_kind_of_room(kind: RoomKind, level: int, allowed: bool) -> None:
    decision = polls.may_start_poll(room(kind), level, is_platform=False)
    assert decision.allowed is allowed
    if not allowed:
        assert decision.reason == "ru.sferum.poll_not_allowed"


def test_polls_in_users_own_rooms_and_by_the_platform_are_theirs() -> None:
    assert polls.may_start_poll(None, EVERYONE, is_platform=False).allowed
    assert polls.may_start_poll(room(RoomKind.DIARY), EVERYONE, is_platform=True).allowed


def test_power_levels_say_who_starts_and_who_votes() -> None:
    """Clients hide the poll button by power levels: the table's level is written there, and
    everyone in a room with polls votes, readers of the class news too."""
    plan = policy.RoomPlan(
        key=RoomKey(RoomKind.CLASS_NEWS, "5a"),
        name="",
        topic="",
        members=frozenset({TEACHER, GUARDIAN}),
        moderators=frozenset({TEACHER}),
        posters_level=MODERATOR,
        parent=None,
    )
    events: Any = policy.power_levels(plan, BOT, None)["events"]
    assert events[matrix.POLL_START] == events[matrix.POLL_END] == MODERATOR
    assert events[matrix.POLL_RESPONSE] == EVERYONE
    diary = attrs.evolve(plan, key=RoomKey(RoomKind.DIARY, "p"))
    diary_events: Any = policy.power_levels(diary, BOT, None)["events"]
    assert diary_events[matrix.POLL_START] == PLATFORM
    assert matrix.POLL_RESPONSE not in diary_events


ORIGINAL = polls.PollRecord("$poll", "!news", "$poll", TEACHER)
COPY = polls.PollRecord("$copy", "!news-5a", "$poll", TEACHER)


@pytest.mark.parametrize(
    ("poll", "sender", "level", "is_platform", "reason"),
    [
        (ORIGINAL, TEACHER, EVERYONE, False, None),  # its author
        (ORIGINAL, GUARDIAN, MODERATOR, False, None),  # a moderator of the room
        (ORIGINAL, GUARDIAN, EVERYONE, False, "ru.sferum.poll_not_own"),
        (COPY, TEACHER, MODERATOR, False, "ru.sferum.poll_mirrored"),  # even the author
        (COPY, BOT, PLATFORM, True, None),  # the platform closes the copies
        (None, GUARDIAN, EVERYONE, False, None),  # a poll in a user's own room
    ],
)
def test_who_ends_a_poll(
    poll: polls.PollRecord | None, sender: str, level: int, is_platform: bool, reason: str | None
) -> None:
    decision = polls.may_end_poll(poll, sender, level, MODERATOR, is_platform=is_platform)
    assert decision.reason == (reason or "")


def start(answers: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        matrix.TEXT: "Когда собрание?",
        matrix.POLL_START: {
            "kind": matrix.POLL_DISCLOSED,
            "max_selections": 1,
            "question": {matrix.TEXT: "Когда собрание?"},
            "answers": answers,
            **extra,
        },
    }


TUE = {"id": "tue", matrix.TEXT: "Во вторник"}
THU = {"id": "thu", matrix.TEXT: [{"mimetype": "text/plain", "body": "В четверг"}]}


def test_a_poll_is_read_as_clients_send_it() -> None:
    poll = polls.parse_poll(start([TUE, THU]))
    assert poll == polls.Poll(
        question="Когда собрание?",
        answers=(polls.Answer("tue", "Во вторник"), polls.Answer("thu", "В четверг")),
    )
    undisclosed = polls.parse_poll(start([TUE], kind="org.matrix.msc3381.poll.undisclosed"))
    assert undisclosed is not None and not undisclosed.disclosed


@pytest.mark.parametrize(
    "content",
    [
        {},
        {matrix.POLL_START: "?"},
        start([]),  # no answers
        start([TUE, TUE]),  # the same answer twice
        start([{"id": 1, matrix.TEXT: "x"}]),
        start([{"id": "a"}]),  # no text
        start([TUE], max_selections="2"),
        {matrix.POLL_START: {"answers": [TUE]}},  # no question
    ],
)
def test_a_poll_no_client_could_show_is_not_counted(content: dict[str, Any]) -> None:
    assert polls.parse_poll(content) is None


def vote(voter: str, *answers: str, ts: int = 1, event_id: str = "") -> polls.Vote:
    return polls.Vote(voter, answers, ts, event_id or f"${voter}{ts}")


POLL = polls.Poll("?", (polls.Answer("tue", "Во вторник"), polls.Answer("thu", "В четверг")))


@pytest.mark.parametrize(
    ("votes", "counts", "voters"),
    [
        ([], {"tue": 0, "thu": 0}, 0),
        ([vote("a", "tue"), vote("b", "thu"), vote("c", "tue")], {"tue": 2, "thu": 1}, 3),
        # The latest response counts, whatever order they arrive in.
        ([vote("a", "thu", ts=2), vote("a", "tue", ts=1)], {"tue": 0, "thu": 1}, 1),
        # More answers than allowed: the first ones count; unknown ones never.
        ([vote("a", "nope", "thu", "tue")], {"tue": 0, "thu": 1}, 1),
        # A latest response with no known answer takes the vote back.
        ([vote("a", "tue", ts=1), vote("a", ts=2)], {"tue": 0, "thu": 0}, 0),
        # The same answer twice is one vote.
        ([vote("a", "tue", "tue")], {"tue": 1, "thu": 0}, 1),
    ],
)
def test_votes_are_counted_as_msc3381_says(
    votes: list[polls.Vote], counts: dict[str, int], voters: int
) -> None:
    assert polls.tally(POLL, votes) == polls.Tally(counts, voters)


def test_several_answers_where_the_poll_allows_them() -> None:
    poll = polls.Poll("?", POLL.answers, max_selections=2)
    assert polls.tally(poll, [vote("a", "tue", "thu")]) == polls.Tally({"tue": 1, "thu": 1}, 1)


def test_the_result_reads_in_russian() -> None:
    body, html = polls.result_text(POLL, polls.Tally({"tue": 21, "thu": 3}, 24))
    assert body == (
        "Опрос завершён: «?»\nВо вторник — 21 голос\nВ четверг — 3 голоса\n"
        "Проголосовали: 24 человека"
    )
    assert "<li>Во вторник — 21 голос</li>" in html
    body, _ = polls.result_text(POLL, polls.Tally({"tue": 11, "thu": 5}, 12))
    assert "11 голосов" in body and "5 голосов" in body and "12 человек" in body


def test_a_users_level_follows_the_spec_defaults() -> None:
    levels = {"users": {TEACHER: 50}, "users_default": 0, "redact": 50}
    assert polls.user_level(levels, TEACHER) == 50
    assert polls.user_level(levels, PUPIL) == 0
    assert polls.user_level(None, PUPIL) == 0
    assert polls.redact_level({}) == 50
    assert polls.user_level({"users": {PUPIL: True}}, PUPIL) == 0  # not a number
