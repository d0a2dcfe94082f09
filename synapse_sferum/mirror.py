"""Mirrors school news into every class news room, with edits, redactions and pins
(docs/rooms-and-rules.md).

Families never join the school-wide news room (its member list would show them to everyone);
the platform copies each post into the class news rooms instead. A table of mirrors makes the
copy idempotent, so a retried or duplicated notification never posts twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from synapse.events import EventBase
from synapse.module_api import ModuleApi
from synapse.types import StateMap

from sferum_shared import matrix
from sferum_shared.byline import byline_body, byline_html
from sferum_shared.rooms import RoomKind
from sferum_shared.vocabulary import Key
from synapse_sferum.pins import PinMirror
from synapse_sferum.sending import send_event
from synapse_sferum.service import DirectoryService

logger = logging.getLogger(__name__)

# Each room's own: reactions to a post, and votes in a poll (the platform counts the votes of
# every copy together, `synapse_sferum.polls`).
_NOT_MIRRORED = frozenset({matrix.REACTION, matrix.POLL_RESPONSE})


def mirrored_content(content: Mapping[str, Any], author: str, source: EventBase) -> dict[str, Any]:
    """The copy's content: the author's name in front, and where it came from."""
    copy = {k: v for k, v in content.items() if k != "m.relates_to"}
    if isinstance(copy.get("body"), str):
        if "url" in copy and "filename" not in copy:
            # A file's body is its name until it has a `filename` (MSC2530): keep the name,
            # and the author's line becomes the caption.
            copy["filename"] = copy["body"]
        copy["body"] = byline_body(author, copy["body"])
    if isinstance(copy.get("formatted_body"), str):
        copy["formatted_body"] = byline_html(author, copy["formatted_body"])
    copy[Key.MIRROR_OF] = {
        "room_id": source.room_id,
        "event_id": source.event_id,
        "sender": source.sender,
    }
    return copy


class SchoolNewsMirror:
    def __init__(self, api: ModuleApi, directory: DirectoryService, bot_user_id: str):
        self._api = api
        self._directory = directory
        self._bot = bot_user_id
        self._pins = PinMirror(api, directory, bot_user_id)

    async def on_new_event(self, event: EventBase, state_events: StateMap[EventBase]) -> None:
        # Every process sees new events; only the background-tasks instance acts on them.
        if not self._api.should_run_background_tasks():
            return
        if event.sender == self._bot or event.type in _NOT_MIRRORED:
            return
        pins = event.is_state() and (event.type, event.state_key) == (matrix.PINNED_EVENTS, "")
        if event.is_state() and not pins:
            return
        key = await self._directory.room_key(event.room_id)
        if key is None or key.kind is not RoomKind.SCHOOL_NEWS:
            return
        if pins:
            self._pins.request(event.room_id, key.scope_id)
            return
        # Synapse waits for this callback before it tells clients about the post: copy it in
        # the background instead of holding the news back behind every class's copy.
        self._api.run_as_background_process(
            "sferum_mirror", self._mirror_logged, event, key.scope_id
        )

    async def _mirror_logged(self, event: EventBase, org_id: str) -> None:
        try:
            await self._mirror(event, org_id)
        except Exception:
            logger.exception("synapse_sferum: mirroring %s failed", event.event_id)

    async def _mirror(self, event: EventBase, org_id: str) -> None:
        if event.type == matrix.REDACTION:
            redacts = event.redacts or event.content.get("redacts")
            if not isinstance(redacts, str):
                return
            for room_id, target in (await self._directory.mirrors_of(redacts)).items():
                if await self._directory.claim_mirror(event.event_id, room_id):
                    await self._send(
                        room_id, matrix.REDACTION, {"redacts": target}, redacts=target
                    )
            return
        relation = event.content.get("m.relates_to") or {}
        member = await self._directory.get_member(event.sender)
        author = member.real_name if member else event.sender
        if relation.get("rel_type") == "m.replace":
            await self._mirror_edit(event, relation.get("event_id"), author)
            return
        if event.type == matrix.POLL_END:
            await self._mirror_poll_end(event, relation.get("event_id"))
            return
        for room_id in await self._directory.class_news_rooms(org_id):
            if await self._directory.claim_mirror(event.event_id, room_id):
                sent = await self._send(
                    room_id, event.type, mirrored_content(event.content, author, event)
                )
                await self._directory.set_mirror_event(event.event_id, room_id, sent)
        # Pinned before its copies existed: the pins that skipped it get them now.
        if await self._pins.is_pinned(event.room_id, event.event_id):
            self._pins.request(event.room_id, org_id)

    async def _mirror_edit(self, event: EventBase, original_id: Any, author: str) -> None:
        new_content = event.content.get("m.new_content")
        if not isinstance(new_content, dict):
            return
        replacement = mirrored_content(new_content, author, event)

        def edit_of(target: str) -> dict[str, Any]:
            return {
                **replacement,
                "body": f"* {replacement.get('body', '')}",
                "m.new_content": replacement,
                "m.relates_to": {"rel_type": "m.replace", "event_id": target},
            }

        await self._mirror_related(event, original_id, edit_of)

    async def _mirror_poll_end(self, event: EventBase, poll_id: Any) -> None:
        """The author ended the poll in the school news: its copies end too."""

        def end_of(target: str) -> dict[str, Any]:
            return {
                **{k: v for k, v in event.content.items() if k != "m.relates_to"},
                "m.relates_to": {"rel_type": "m.reference", "event_id": target},
            }

        await self._mirror_related(event, poll_id, end_of)

    async def _mirror_related(
        self, event: EventBase, original_id: Any, content_for: Callable[[str], dict[str, Any]]
    ) -> None:
        """Sends `event`'s counterpart into each class news room, about that room's copy of
        the post it relates to."""
        if not isinstance(original_id, str):
            return
        for room_id, target in (await self._directory.mirrors_of(original_id)).items():
            if not await self._directory.claim_mirror(event.event_id, room_id):
                continue
            sent = await self._send(room_id, event.type, content_for(target))
            await self._directory.set_mirror_event(event.event_id, room_id, sent)

    async def _send(
        self, room_id: str, event_type: str, content: dict[str, Any], redacts: str | None = None
    ) -> str:
        api, bot = self._api, self._bot
        return await send_event(api, bot, room_id, event_type, content, redacts=redacts)
