"""Reports of messages (docs/rooms-and-rules.md «Reports»): which school hears of one, whether
its staff may read the reported text, and the notice the platform posts in its staff room.

Synapse only writes a report to its `event_reports` table (no callback fires); the platform
reads new rows and tells the school's staff room (`synapse_sferum.reports`).
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any
from urllib.parse import quote

import attrs

from sferum_shared.model import Member, Role
from sferum_shared.rooms import RoomKind
from sferum_shared.vocabulary import Key
from synapse_sferum.policy.room_kinds import CLASS_TEACHER, ROOM_KINDS, STAFF, TEACHERS

# The staff room's members: the school's teachers and staff (`room_kinds.ROOM_KINDS`).
_STAFF_CIRCLES = frozenset({TEACHERS, CLASS_TEACHER, STAFF})
# Kinds of room some of whose members are the school's teachers or staff.
STAFF_SEEN_KINDS = frozenset(
    kind for kind, spec in ROOM_KINDS.items() if _STAFF_CIRCLES & set(spec.members)
)
ROLE_NAMES = {  # in the order a person with several roles is named
    Role.TEACHER: "учитель",
    Role.STAFF: "сотрудник школы",
    Role.GUARDIAN: "родитель",
    Role.STUDENT: "ученик",
}
MAX_QUOTE = 1000  # characters of the reported text in the notice


@attrs.frozen
class EventReport:
    """A row of Synapse's `event_reports`: who reported which event, why."""

    report_id: int
    room_id: str
    event_id: str
    reporter: str
    reason: str | None = None
    score: int | None = None


def staff_may_read(kind: RoomKind | None, staff_room_has_outsiders: bool) -> bool:
    """Whether the reported text may be quoted in the staff room.

    A staff room's reader must not learn from a report what they could not read where it was
    written. The staff room holds the school's teachers and staff, so the text goes there only
    from a provisioned room that has teachers or staff among its members (class chat and news,
    lessons, meetings, the school's own rooms). Never from a direct chat or a group people made
    themselves (the platform cannot vouch for who was meant to read it), nor from a diary,
    documents or the parents' chat, which no teacher reads. And never while the staff room
    holds someone from another server: a partner school's staff have no business reading this
    school's children.
    """
    return kind in STAFF_SEEN_KINDS and not staff_room_has_outsiders


def users_room_schools(members: Iterable[Member]) -> frozenset[str]:
    """The schools of a room people made themselves: those every directory member of it
    belongs to (none when it has no directory member, or its members share no school)."""
    schools: frozenset[str] | None = None
    for member in members:
        schools = member.org_ids if schools is None else schools & member.org_ids
    return schools or frozenset()


def reported_text(content: dict[str, Any]) -> str | None:
    """The text of a reported message, if it has any (not encrypted, not redacted)."""
    body = content.get("body")
    return body if isinstance(body, str) and body.strip() else None


def person_label(user_id: str, member: Member | None) -> str:
    """«Real Name (role)»; the account's ID for someone outside the directory."""
    if member is None:
        return user_id
    roles = ", ".join(name for role, name in ROLE_NAMES.items() if member.has(role))
    name = member.real_name or user_id
    return f"{name} ({roles})" if roles else name


def event_link(room_id: str, event_id: str) -> str:
    return f"https://matrix.to/#/{quote(room_id, safe='!:')}/{quote(event_id, safe='$:')}"


@attrs.frozen
class ReportFacts:
    """What the platform found out about a report, for its notice."""

    report: EventReport
    reporter: str  # `person_label`s
    sender: str | None  # None: the event is gone (or not in that room)
    sender_id: str | None
    room_title: str
    text_allowed: bool
    text: str | None


def notice_content(facts: ReportFacts) -> dict[str, Any]:
    """The staff room's `m.notice` about one report, in plain text and HTML."""
    report = facts.report
    link = event_link(report.room_id, report.event_id)
    if not facts.text_allowed:
        text_line = ("", "Текст сообщения не показан: сотрудники школы не читают эту комнату.")
    elif facts.text is None:
        text_line = ("", "Текста нет: сообщение удалено, зашифровано или это не текст.")
    else:
        quoted = facts.text if len(facts.text) <= MAX_QUOTE else facts.text[:MAX_QUOTE] + "…"
        text_line = ("Сообщение: ", quoted)
    lines = [
        ("Пожаловался: ", facts.reporter),
        ("Автор сообщения: ", facts.sender or "неизвестен"),
        ("Комната: ", facts.room_title),
        ("Причина: ", report.reason or "не указана"),
        *([("Оценка: ", str(report.score))] if report.score is not None else []),
        text_line,
    ]
    title = "Жалоба на сообщение"
    body = "\n".join([title, *(label + value for label, value in lines), f"Ссылка: {link}"])
    html = "<br>".join(
        [
            f"<b>{title}</b>",
            *(escape(label) + escape(value) for label, value in lines),
            f'<a href="{escape(link)}">Открыть сообщение</a>',
        ]
    )
    return {
        "msgtype": "m.notice",
        "body": body,
        "format": "org.matrix.custom.html",
        "formatted_body": html,
        Key.REPORT: {
            "report_id": report.report_id,
            "room_id": report.room_id,
            "event_id": report.event_id,
            "reporter": report.reporter,
            "sender": facts.sender_id,
        },
    }
