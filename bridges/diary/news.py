"""The mini-app's «Новости»: a class news room's recent school articles, without I/O.

The bridge reads the room as the platform's bot (the appservice token; the bot is in every
provisioned room, and it is the bot that posts the copies). Only the bot's copies of school news
count (`ru.sferum.mirror_of`): what else is in the room is the class's own talk. The author's name
comes from the copy's byline, which the module wrote from the directory's real name when it made
the copy (`who` gives roles, not names); `mirror_of.sender` is passed on as the author's account.
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from bridges.diary.render import hhmm, ru_date
from bridges.diary.sanitize import plain_text, sanitize
from sferum_shared import matrix
from sferum_shared.byline import split_byline
from sferum_shared.http import Request, Response
from sferum_shared.vocabulary import Key

ARTICLES = 20
# Edits and other messages share the page of events: read more than are shown.
_EVENTS = 100
_SUMMARY = 300
_TEXT_MSGTYPES = frozenset({"m.text", "m.notice"})
_HTML = "org.matrix.custom.html"


class NewsUnavailable(Exception):
    """The homeserver did not hand over the room's messages."""


def messages_request(homeserver_url: str, as_token: str, room_id: str) -> Request:
    """The room's latest messages, newest first (`GET /rooms/{id}/messages?dir=b`)."""
    query = urlencode(
        {"dir": "b", "limit": _EVENTS, "filter": json.dumps({"types": [matrix.MESSAGE]})}
    )
    return Request(
        "GET",
        f"{homeserver_url.rstrip('/')}/_matrix/client/v3/rooms/{quote(room_id, safe='')}"
        f"/messages?{query}",
        {"Authorization": f"Bearer {as_token}"},
    )


def events_of(response: Response) -> list[dict[str, Any]]:
    """The `chunk` of a `/messages` answer; NewsUnavailable for anything else."""
    chunk = response.json_object().get("chunk")
    if response.status != 200 or not isinstance(chunk, list):
        raise NewsUnavailable(f"messages: {response.status} {response.body[:200]!r}")
    return [event for event in chunk if isinstance(event, dict)]


def articles(
    events: Iterable[Mapping[str, Any]], bot_user_id: str, timezone: str
) -> list[dict[str, Any]]:
    """The bot's copies of school news among `events` (newest first), as the page shows them.

    An edit's newest text replaces its article's (events come newest first, so the first edit
    seen is the newest); a redacted copy has no body left and is skipped.
    """
    tz = zoneinfo.ZoneInfo(timezone)
    edits: dict[str, Mapping[str, Any]] = {}
    shown: list[dict[str, Any]] = []
    for event in events:
        content = event.get("content")
        if event.get("sender") != bot_user_id or not isinstance(content, dict):
            continue
        relation = content.get("m.relates_to")
        if isinstance(relation, dict) and relation.get("rel_type") == "m.replace":
            new = content.get("m.new_content")
            if isinstance(new, dict) and isinstance(relation.get("event_id"), str):
                edits.setdefault(relation["event_id"], new)
            continue
        article = _article(event, edits.get(str(event.get("event_id")), content), tz)
        if article is not None:
            shown.append(article)
        if len(shown) == ARTICLES:
            break
    return shown


def _article(
    event: Mapping[str, Any], content: Mapping[str, Any], tz: zoneinfo.ZoneInfo
) -> dict[str, Any] | None:
    origin = content.get(Key.MIRROR_OF)
    body, ts = content.get("body"), event.get("origin_server_ts")
    if (
        not isinstance(origin, dict)
        or content.get("msgtype") not in _TEXT_MSGTYPES
        or not isinstance(body, str)
        or not isinstance(ts, int)
    ):
        return None
    formatted = content.get("formatted_body")
    if content.get("format") != _HTML or not isinstance(formatted, str):
        formatted = None
    author, body, formatted = split_byline(body, formatted)
    title, text = summary(body, formatted)
    sent = datetime.fromtimestamp(ts / 1000, tz)
    sender = origin.get("sender")
    return {
        "event_id": event.get("event_id"),
        "author": author,
        "author_id": sender if isinstance(sender, str) else None,
        "sent": sent.isoformat(),
        "day": ru_date(sent),
        "time": hhmm(sent),
        "title": title,
        "summary": text,
        "html": sanitize(formatted) if formatted is not None else None,
        "text": body if formatted is None else None,
    }


def summary(body: str, formatted_body: str | None) -> tuple[str, str]:
    """(title, summary): the first heading, or else the first line; then what follows, cut."""
    heading, text = plain_text(formatted_body) if formatted_body is not None else (None, body)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if heading is None:
        heading, lines = (lines[0], lines[1:]) if lines else ("", [])
    elif lines and lines[0] == heading:
        lines = lines[1:]
    rest = " ".join(lines)
    if len(rest) > _SUMMARY:
        rest = rest[: _SUMMARY - 1].rstrip() + "…"
    return heading, rest
