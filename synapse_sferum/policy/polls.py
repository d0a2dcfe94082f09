"""Polls (MSC3381): who starts and ends them, and what counts when one ends.

Clients send `org.matrix.msc3381.poll.start`, `…response` and `…end`. Power levels say who may
start one in each room kind (`room_kinds.ROOM_KINDS`, so clients hide the button); the rules
here say it again where the event is allowed, so a room whose power levels a reconcile has not
yet brought up to date lets no one through either. Votes are counted by the platform, which
posts each poll's result as text for clients that do not show polls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

import attrs

from sferum_shared import matrix
from sferum_shared.vocabulary import Reason
from synapse_sferum.policy.decision import ALLOW, Decision, refuse
from synapse_sferum.policy.events import ProvisionedRoom
from synapse_sferum.policy.room_kinds import ROOM_KINDS


@attrs.frozen
class Answer:
    answer_id: str
    text: str


@attrs.frozen
class Poll:
    """A poll's question and answers, as its start event gives them."""

    question: str
    answers: tuple[Answer, ...]
    max_selections: int = 1
    disclosed: bool = True  # undisclosed: clients show the results only once it ends


@attrs.frozen
class PollRecord:
    """A poll the platform has seen start: `origin_id` is the poll whose votes this one's count
    towards (itself, or for a school news poll's copy in a class's news, the original)."""

    event_id: str
    room_id: str
    origin_id: str
    creator: str

    @property
    def is_copy(self) -> bool:
        return self.origin_id != self.event_id


@attrs.frozen
class Vote:
    voter: str
    answer_ids: tuple[str, ...]
    ts: int  # origin_server_ts: the latest response of each voter counts
    event_id: str  # breaks ties of equal timestamps, so every server counts alike


@attrs.frozen
class Tally:
    counts: Mapping[str, int]  # answer ID -> votes, every answer of the poll
    voters: int  # people whose latest response chose at least one answer


def _text(value: Any) -> str | None:
    """The plain text of an MSC1767 text block: a string, or a list of {mimetype, body}."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        for part in value:
            if isinstance(part, Mapping) and part.get("mimetype", "text/plain") == "text/plain":
                body = part.get("body")
                if isinstance(body, str):
                    return body
    return None


def parse_poll(content: Mapping[str, Any]) -> Poll | None:
    """The poll of a start event's content; None for one no client could show."""
    start = content.get(matrix.POLL_START)
    if not isinstance(start, Mapping):
        return None
    asked = start.get("question")
    question = _text(asked.get(matrix.TEXT)) if isinstance(asked, Mapping) else None
    raw_answers = start.get("answers")
    if question is None or not isinstance(raw_answers, list):
        return None
    answers = []
    for raw in raw_answers:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
            return None
        text = _text(raw.get(matrix.TEXT))
        if text is None:
            return None
        answers.append(Answer(raw["id"], text))
    if not answers or len({a.answer_id for a in answers}) != len(answers):
        return None
    max_selections = start.get("max_selections", 1)
    if isinstance(max_selections, bool) or not isinstance(max_selections, int):
        return None
    return Poll(
        question=question,
        answers=tuple(answers),
        max_selections=max(1, min(max_selections, len(answers))),
        disclosed=start.get("kind", matrix.POLL_DISCLOSED) == matrix.POLL_DISCLOSED,
    )


def response_answers(content: Mapping[str, Any]) -> tuple[str, ...]:
    """The answer IDs a response chose, as sent; anything malformed chooses nothing."""
    response = content.get(matrix.POLL_RESPONSE)
    answers = response.get("answers") if isinstance(response, Mapping) else None
    if not isinstance(answers, list):
        return ()
    return tuple(a for a in answers if isinstance(a, str))


def related_event(content: Mapping[str, Any]) -> str | None:
    """The poll a response or an end refers to (`m.reference`)."""
    relation = content.get("m.relates_to")
    if not isinstance(relation, Mapping) or relation.get("rel_type") != "m.reference":
        return None
    event_id = relation.get("event_id")
    return event_id if isinstance(event_id, str) else None


def user_level(power_levels: Mapping[str, Any] | None, user_id: str) -> int:
    """A user's power level by the room's `m.room.power_levels` (the spec's defaults without)."""
    levels = power_levels or {}
    users = levels.get("users")
    level = users.get(user_id) if isinstance(users, Mapping) else None
    if level is None:
        level = levels.get("users_default", 0)
    return level if isinstance(level, int) and not isinstance(level, bool) else 0


def redact_level(power_levels: Mapping[str, Any] | None) -> int:
    """The level that removes others' events (50 by the spec when unset)."""
    level = (power_levels or {}).get("redact", 50)
    return level if isinstance(level, int) and not isinstance(level, bool) else 50


def may_start_poll(
    room: ProvisionedRoom | None, sender_level: int, *, is_platform: bool
) -> Decision:
    """A poll in a provisioned room takes its kind's poll level; users' own rooms are theirs."""
    if is_platform or room is None:
        return ALLOW
    if sender_level >= ROOM_KINDS[room.key.kind].poll_level:
        return ALLOW
    return refuse(Reason.POLL_NOT_ALLOWED)


def may_end_poll(
    poll: PollRecord | None,
    sender: str,
    sender_level: int,
    redact_level: int,
    *,
    is_platform: bool,
) -> Decision:
    """Only the poll's author, or someone who may remove others' posts, ends it (MSC3381
    counts no other end); a school news poll's copies are closed by the platform when the
    original is. A poll the platform never saw start (a user's own room) is left to clients."""
    if is_platform or poll is None:
        return ALLOW
    if poll.is_copy:
        return refuse(Reason.POLL_MIRRORED)
    if sender == poll.creator or sender_level >= redact_level:
        return ALLOW
    return refuse(Reason.POLL_NOT_OWN)


def tally(poll: Poll, votes: Iterable[Vote]) -> Tally:
    """Each voter's latest response counts, with its first `max_selections` known answers; a
    latest response that chooses none of them takes the voter's vote back (MSC3381)."""
    latest: dict[str, Vote] = {}
    for vote in sorted(votes, key=lambda v: (v.ts, v.event_id)):
        latest[vote.voter] = vote
    known = [a.answer_id for a in poll.answers]
    counts = dict.fromkeys(known, 0)
    voters = 0
    for vote in latest.values():
        chosen = [a for a in dict.fromkeys(vote.answer_ids) if a in counts][: poll.max_selections]
        for answer_id in chosen:
            counts[answer_id] += 1
        voters += bool(chosen)
    return Tally(counts, voters)


def _votes(n: int) -> str:
    """«1 голос», «3 голоса», «5 голосов»: Russian plural by the last digits."""
    if n % 10 == 1 and n % 100 != 11:
        return f"{n} голос"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return f"{n} голоса"
    return f"{n} голосов"


def _people(n: int) -> str:
    if n % 10 in (2, 3, 4) and not 12 <= n % 100 <= 14:
        return f"{n} человека"
    return f"{n} человек"


def result_text(poll: Poll, result: Tally) -> tuple[str, str]:
    """The result as a message's plain `body` and its HTML `formatted_body`."""
    lines = [f"{a.text} — {_votes(result.counts[a.answer_id])}" for a in poll.answers]
    head = f"Опрос завершён: «{poll.question}»"
    foot = f"Проголосовали: {_people(result.voters)}"
    body = "\n".join([head, *lines, foot])
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    html = f"<p><b>{escape(head)}</b></p><ul>{items}</ul><p>{escape(foot)}</p>"
    return body, html
