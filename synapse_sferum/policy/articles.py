"""An article an admin posts into the school news in a staff member's name (`sferumctl news
post`, docs/rooms-and-rules.md «Articles and pins»): who may be its author, and its message.

The author must be someone who may post in the school news, and, to pin it, someone who may pin
there: the room-kind table says who (`ROOM_KINDS[SCHOOL_NEWS]`: its members post, its moderators
pin), so the command follows the rules a client would meet.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping
from typing import Any

from sferum_shared import matrix
from sferum_shared.html import message_html, plain_text
from sferum_shared.model import Member, Role
from sferum_shared.rooms import RoomKind
from synapse_sferum.policy.provisioning import pin_level
from synapse_sferum.policy.room_kinds import (
    EVERYONE,
    MODERATOR,
    ROOM_KINDS,
    STAFF,
    TEACHERS,
    Circle,
)

# A Matrix event is at most 65 536 bytes as JSON: the article's text and HTML keep room for the
# rest of the event, and for the author's line its copies in class news add.
MAX_ARTICLE_BYTES = 60_000
MAX_KEY_LENGTH = 100
_KEY = re.compile(r"[A-Za-z0-9._-]+")

# The circles of a school-wide room, by the role that puts a person of the school in them.
_ORG_CIRCLES: Mapping[Circle, Role] = {TEACHERS: Role.TEACHER, STAFF: Role.STAFF}


class ArticleError(ValueError):
    """The article cannot be posted as asked; the message says why, for the admin."""


def _circles(member: Member, org_id: str) -> set[Circle]:
    if org_id not in member.org_ids:
        return set()
    return {circle for circle, role in _ORG_CIRCLES.items() if member.has(role)}


def author_refusal(member: Member | None, person_id: str, org_id: str, *, pin: bool) -> str | None:
    """Why this person may not post (or pin) an article in the school's news; None if they may."""
    if member is None:
        return f"{person_id!r} is not a person of the directory with an account"
    spec = ROOM_KINDS[RoomKind.SCHOOL_NEWS]
    circles = _circles(member, org_id)
    posts = bool(circles & set(spec.members)) and spec.posters_level == EVERYONE
    if not posts:
        return (
            f"{person_id!r} may not post in the school news of {org_id!r}: "
            "only the school's teachers and staff do"
        )
    level = MODERATOR if spec.moderators in circles else EVERYONE
    if pin and level < pin_level():
        return (
            f"{person_id!r} may not pin in the school news of {org_id!r}: only the school's "
            "staff do; post without --pin, or name a staff member as the author"
        )
    return None


def check_key(key: str) -> str:
    """The article's key, which makes posting it again a no-op: letters, digits, `._-`."""
    if not key or len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise ArticleError(
            f"the article key must be 1 to {MAX_KEY_LENGTH} Latin letters, digits, '.', '_' "
            f"or '-', got {key!r}"
        )
    return key


def article_content(source_html: str, title: str | None) -> tuple[dict[str, Any], list[str]]:
    """The `m.text` message of an article file's HTML, and what the allow-list left out of it.

    The HTML keeps what a Matrix message may hold (`sferum_shared.html`); `title`, when the
    article does not already open with it, becomes its first heading. `body` is the plain text,
    for clients that show no HTML.
    """
    sanitized = message_html(source_html)
    formatted = sanitized.html
    heading, text = plain_text(formatted)
    if title is not None:
        title = " ".join(title.split())
        if not title:
            raise ArticleError("the title is empty")
        if heading != title:
            formatted = f"<h1>{html.escape(title, quote=False)}</h1>{formatted}"
            heading, text = plain_text(formatted)
    if not text.strip():
        raise ArticleError("the article has no text once cut to what a Matrix message may hold")
    content = {
        "msgtype": "m.text",
        "body": text,
        "format": matrix.HTML_FORMAT,
        "formatted_body": formatted,
    }
    size = len(text.encode()) + len(formatted.encode())
    if size > MAX_ARTICLE_BYTES:
        raise ArticleError(
            f"the article is {size} bytes as text and HTML; a Matrix message holds at most "
            f"{MAX_ARTICLE_BYTES}: shorten it, or post its pictures as files of their own"
        )
    return content, list(sanitized.dropped)


def content_hash(content: Mapping[str, Any]) -> str:
    """What tells a changed article from the one posted: a hash of its content."""
    canonical = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def edit_content(content: Mapping[str, Any], event_id: str) -> dict[str, Any]:
    """The edit (`m.replace`) that makes the post `event_id` show `content` instead; clients
    that know no edits show its fallback, the new text after an asterisk."""
    return {
        **content,
        "body": f"* {content['body']}",
        "formatted_body": f"* {content['formatted_body']}",
        "m.new_content": dict(content),
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
    }
