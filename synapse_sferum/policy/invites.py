"""The teacher's invite links (issue 13): «коды 5А» to the platform bot. Pure.

A class teacher gets linking codes for the pupils and guardians of their own class without a
shell: they write «коды 5А» to the platform bot in their one-to-one chat with it, and the bot
answers with a link per person (`<public base URL>/join#<CODE>`) that they pass on. Who may:
the class's class teacher (its primary teacher, as the roster says) and the school's staff.
Other teachers, pupils and guardians are told why not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date

import attrs

from sferum_shared.model import Member, Role
from sferum_shared.vocabulary import WidgetId

COMMAND_WORDS = ("коды", "!коды", "codes", "!codes")
_COMMAND = re.compile(r"^\s*(\S+)(?:\s+(.*?))?\s*$", re.DOTALL)

HELP_TEXT = (
    "Коды приглашения: напишите «коды 5А» (название класса), и я пришлю ссылку для каждого "
    "ученика и родителя этого класса, у кого ещё нет учётной записи. По ссылке человек "
    "регистрируется с телефона сам. Коды выдаёт классный руководитель класса или "
    "администрация школы."
)


def join_link(base_url: str, code: str) -> str:
    """A code as a link to the registration page (`synapse_sferum.join`), which reads the
    fragment: browsers never send it to a server, or to anyone the page links to."""
    return f"{base_url.rstrip('/')}/join#{code}"


CODES_PAGE = "/join/codes"


def invites_widget(public_baseurl: str) -> dict[str, object]:
    """The content of the staff room's widget that opens the page of invite links."""
    return {
        "id": WidgetId.INVITES,
        "type": "m.custom",
        "name": "Приглашения",
        "url": f"{public_baseurl.rstrip('/')}{CODES_PAGE}",
        "data": {"title": "Ссылки-приглашения для родителей и учеников"},
        "waitForIframeLoad": True,
    }


@attrs.frozen
class CodesCommand:
    class_title: str  # as typed; "" asks for help


@attrs.frozen
class ClassFacts:
    """What the rule needs of the class the command names."""

    class_id: str
    title: str
    org_id: str
    class_teacher_ids: frozenset[str]  # person IDs of its primary teachers


@attrs.frozen
class Invitation:
    name: str
    link: str


def parse_codes_command(body: str) -> CodesCommand | None:
    """«коды 5А» (or «!коды 5а», «codes 5A»); None for any other message."""
    found = _COMMAND.match(body)
    if found is None or found.group(1).lower() not in COMMAND_WORDS:
        return None
    return CodesCommand((found.group(2) or "").strip())


def find_class(
    title: str, classes: Iterable[ClassFacts], org_ids: frozenset[str]
) -> ClassFacts | None:
    """The class of this title in one of the person's schools ("5а", "5 А" and "5А" alike)."""
    wanted = _title_key(title)
    matches = [c for c in classes if _title_key(c.title) == wanted and c.org_id in org_ids]
    return matches[0] if len(matches) == 1 else None


def _title_key(title: str) -> str:
    return "".join(title.split()).casefold()


def codes_refusal(member: Member | None, found: ClassFacts | None, typed: str) -> str | None:
    """Why this person gets no codes for the class they named (Russian), or None."""
    if member is None:
        return (
            "Коды выдаются только сотрудникам школы, чья учётная запись связана со списками школы."
        )
    if not member.is_school_adult:
        return "Коды приглашения выдают только классные руководители и администрация школы."
    if found is None:
        return (
            f"Класса «{typed}» нет в вашей школе. Напишите название как в журнале, "
            "например «коды 5А»."
        )
    if member.has(Role.STAFF) and found.org_id in member.org_ids:
        return None
    if member.person_id in found.class_teacher_ids:
        return None
    return (
        f"Коды для {found.title} выдаёт классный руководитель этого класса или администрация "
        "школы."
    )


def codes_reply(
    title: str, invitations: Sequence[Invitation], skipped: Sequence[str], expires: date
) -> str:
    """The bot's answer: one line per person, then who got none."""
    if not invitations:
        lines = [f"В {title} все ученики и родители уже с учётными записями: новых кодов нет."]
    else:
        lines = [
            f"Ссылки-приглашения для {title} (действуют до {expires:%d.%m.%Y}). "
            "Передайте каждому его ссылку: по ней регистрируются с телефона.",
            "",
            *(f"{i.name}: {i.link}" for i in invitations),
        ]
    if skipped:
        lines += [
            "",
            f"Без кода (уже есть учётная запись или нельзя выдать): {', '.join(skipped)}.",
        ]
    return "\n".join(lines)
