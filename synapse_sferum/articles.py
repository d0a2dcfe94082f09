"""An admin posts an article into a school's news in a staff member's name, and may pin it
(`sferumctl news post`, docs/rooms-and-rules.md «Articles and pins»).

The module sends the message, and the pin, as the author's own account, through Synapse's
checks like a client's: the rules of the school news hold (`policy/articles.py` says first who
may, so the admin gets a reason rather than a bare refusal). The mirror then copies the article
into every class's news and `pins.py` pins the copies. An article has a key: posting the same key
again sends nothing (unless the post was removed), so a script such as `scripts/demo` may run
any number of times.
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
from synapse_sferum.policy.articles import ArticleError, article_content, author_refusal
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
        async with self._lock:
            posted = await self._directory.run(
                "sferum_article", articles.article_txn, org_id, request.key
            )
            sent = posted is None or await self._directory.run(
                "sferum_article_redacted", compat.redacted_txn, posted.event_id
            )
            if sent:
                event_id = await self._send(user_id, room_id, matrix.MESSAGE, content)
                now = int(self._api.get_current_time_msec())
                posted = PostedArticle(room_id, event_id, user_id, now)
                record = articles.record_article_txn
                await self._directory.run("sferum_record", record, org_id, request.key, posted)
                logger.info(
                    "synapse_sferum: article %r of %s posted as %s", request.key, org_id, event_id
                )
        assert posted is not None
        pinned = request.pin and await self._pin(user_id, posted.room_id, posted.event_id)
        return {
            "org_id": org_id,
            "room_id": posted.room_id,
            "event_id": posted.event_id,
            "author": posted.author,
            "posted": sent,
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
