"""An admin posts an article into a school's news in a staff member's name, and may pin it
(`sferumctl news post`, docs/rooms-and-rules.md «Articles and pins»).

The module sends the message, and the pin, as the author's own account, through Synapse's
checks like a client's: the rules of the school news hold (`policy/articles.py` says first who
may, so the admin gets a reason rather than a bare refusal). The mirror then copies the article
into every class's news and `pins.py` pins the copies. An article has a key: posting the same key
again sends nothing, or an edit of the post if the article changed (a post that was removed is
posted anew), so a script such as `scripts/demo` may run any number of times and on any day.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import attrs
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from sferum_shared import matrix
from sferum_shared.rooms import RoomKey, RoomKind
from synapse_sferum import compat
from synapse_sferum.policy.articles import (
    ArticleError,
    article_content,
    author_refusal,
    content_hash,
    edit_content,
)
from synapse_sferum.policy.news import pinned_ids
from synapse_sferum.sending import send_event
from synapse_sferum.service import DirectoryService
from synapse_sferum.store import articles
from synapse_sferum.store.articles import PostedArticle

logger = logging.getLogger(__name__)


@attrs.frozen
class ArticleRequest:
    author: str  # the person's sourcedId
    key: str
    html: str
    title: str | None = None
    pin: bool = False
    org_id: str | None = None  # None: the author's one school


class Articles:
    def __init__(self, api: ModuleApi, directory: DirectoryService):
        self._api = api
        self._directory = directory
        self._lock = asyncio.Lock()  # one post at a time: a key is looked up, then recorded

    async def post(self, request: ArticleRequest) -> dict[str, Any]:
        """Posts (or finds) the article, pins it if asked; an ArticleError says why not."""
        member = await self._directory.member_for_person(request.author)
        user_id = await self._directory.user_for_person(request.author)
        if member is None or user_id is None:
            raise ArticleError(
                f"{request.author!r} is not a person of the directory with an account "
                "(sferumctl accounts issue gives one)"
            )
        org_id = _school(request, sorted(member.org_ids))
        refusal = author_refusal(member, request.author, org_id, pin=request.pin)
        if refusal is not None:
            raise ArticleError(refusal)
        room_id = await self._directory.room_id(RoomKey(RoomKind.SCHOOL_NEWS, org_id))
        if room_id is None:
            raise ArticleError(
                f"the school news of {org_id!r} has not been made yet (sferumctl reconcile)"
            )
        content, dropped = article_content(request.html, request.title)
        digest = content_hash(content)
        async with self._lock:
            posted = await self._directory.run(
                "sferum_article", articles.article_txn, org_id, request.key
            )
            if posted is not None and await self._directory.run(
                "sferum_article_redacted", compat.redacted_txn, posted.event_id
            ):
                posted = None  # removed from the news: posted anew
            action, sent_id = "unchanged", None
            if posted is None:
                action = "posted"
                sent_id = await self._send(user_id, room_id, matrix.MESSAGE, content)
                now = int(self._api.get_current_time_msec())
                posted = PostedArticle(room_id, sent_id, user_id, now, digest)
            elif posted.content_hash != digest:
                if posted.author != user_id:  # clients show only the sender's own edits
                    raise ArticleError(
                        f"the article {request.key!r} was posted by {posted.author}: only they "
                        "can change it; name them as --author, or give another --key"
                    )
                action = "edited"
                edit = edit_content(content, posted.event_id)
                sent_id = await self._send(posted.author, posted.room_id, matrix.MESSAGE, edit)
                posted = attrs.evolve(posted, content_hash=digest)
            if sent_id is not None:
                record = articles.record_article_txn
                await self._directory.run("sferum_record", record, org_id, request.key, posted)
                logger.info(
                    "synapse_sferum: article %r of %s %s: %s", request.key, org_id, action, sent_id
                )
        pinned = request.pin and await self._pin(user_id, posted.room_id, posted.event_id)
        return {
            "org_id": org_id,
            "room_id": posted.room_id,
            "event_id": posted.event_id,
            "author": posted.author,
            "action": action,
            "sent": sent_id,
            "pinned": pinned,
            "dropped": dropped,
        }

    async def _pin(self, user_id: str, room_id: str, event_id: str) -> bool:
        """Adds the post to the room's pins (as the author); False if it was pinned already."""
        state = await self._api.get_room_state(room_id, [(matrix.PINNED_EVENTS, "")])
        event = state.get((matrix.PINNED_EVENTS, ""))
        pins = pinned_ids(event.content) if event is not None else []
        if event_id in pins:
            return False
        pin = {"pinned": [*pins, event_id]}
        await self._send(user_id, room_id, matrix.PINNED_EVENTS, pin, state_key="")
        return True

    async def _send(
        self,
        user_id: str,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = None,
    ) -> str:
        try:
            return await send_event(
                self._api, user_id, room_id, event_type, content, state_key=state_key
            )
        except SynapseError as e:
            raise ArticleError(
                f"the server refused {event_type} from {user_id} in {room_id}: {e.msg}"
            ) from None


def _school(request: ArticleRequest, org_ids: list[str]) -> str:
    if request.org_id is not None:
        if request.org_id not in org_ids:
            raise ArticleError(
                f"{request.author!r} is not of the school {request.org_id!r} "
                f"(theirs: {', '.join(org_ids) or 'none'})"
            )
        return request.org_id
    if len(org_ids) != 1:
        raise ArticleError(
            f"{request.author!r} belongs to the schools {', '.join(org_ids) or '(none)'}: "
            "name one with --school"
        )
    return org_ids[0]
