"""Pins in the school news pin the mirrored copies in every class news room
(docs/rooms-and-rules.md «Articles and pins»).

Families read the copies, never the school news itself, so a pinned article must be pinned where
they are. Each sync reads the pins as they are now (the school's and the class's), so requests
that pile up are served by one run, and runs never overlap: a slower, older run cannot write
pins over a newer one's.
"""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi

from sferum_shared import matrix
from synapse_sferum.policy.news import class_pins, pinned_ids
from synapse_sferum.sending import send_event
from synapse_sferum.service import DirectoryService

logger = logging.getLogger(__name__)


class PinMirror:
    def __init__(self, api: ModuleApi, directory: DirectoryService, bot_user_id: str):
        self._api = api
        self._directory = directory
        self._bot = bot_user_id
        self._wanted: dict[str, str] = {}  # school news room -> its school
        self._running = False

    def request(self, news_room_id: str, org_id: str) -> None:
        """Brings the class news pins in line with this school news room's, in the background
        (call it on the background-tasks instance only)."""
        self._wanted[news_room_id] = org_id
        if not self._running:
            self._running = True
            self._api.run_as_background_process("sferum_mirror_pins", self._drain)

    async def is_pinned(self, news_room_id: str, event_id: str) -> bool:
        return event_id in await self._pinned(news_room_id)

    async def _drain(self) -> None:
        try:
            while self._wanted:
                news_room_id, org_id = self._wanted.popitem()
                try:
                    await self._sync(news_room_id, org_id)
                except Exception:
                    logger.exception("synapse_sferum: mirroring the pins of %s failed", org_id)
        finally:
            self._running = False

    async def _sync(self, news_room_id: str, org_id: str) -> None:
        school_pins = await self._pinned(news_room_id)
        copies = {post: await self._directory.mirrors_of(post) for post in school_pins}
        for room_id in await self._directory.class_news_rooms(org_id):
            current = await self._pinned(room_id)
            wanted = class_pins(
                school_pins,
                {post: rooms[room_id] for post, rooms in copies.items() if room_id in rooms},
                current,
                await self._directory.copies_among(room_id, current),
            )
            if wanted != current:
                await send_event(
                    self._api,
                    self._bot,
                    room_id,
                    matrix.PINNED_EVENTS,
                    {"pinned": wanted},
                    state_key="",
                )

    async def _pinned(self, room_id: str) -> list[str]:
        state = await self._api.get_room_state(room_id, [(matrix.PINNED_EVENTS, "")])
        event = state.get((matrix.PINNED_EVENTS, ""))
        return pinned_ids(event.content) if event is not None else []
