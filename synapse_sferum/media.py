"""Files of this server reach the uploader and the members of the rooms they were posted in.

Glue for `policy.media`: every local event is looked at before Synapse stores it, and the files
it names are noted against its room (before any client can see the event, so the first
download of a photo never finds it unnoted); every download and thumbnail of a local file asks
`may_fetch` first (compat wraps Synapse's media endpoints for that).
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.events import EventBase
from synapse.module_api import ModuleApi
from synapse.types import StateMap

from synapse_sferum import compat
from synapse_sferum.policy.media import local_media_in, may_fetch_media
from synapse_sferum.service import DirectoryService
from synapse_sferum.store import rooms

logger = logging.getLogger(__name__)


class MediaGate:
    def __init__(self, api: ModuleApi, directory: DirectoryService, bot_user_id: str):
        self._api = api
        self._directory = directory
        self._bot = bot_user_id

    def register(self) -> None:
        self._api.register_third_party_rules_callbacks(check_event_allowed=self.note_event)
        compat.guard_media_downloads(self.may_fetch)

    async def note_event(
        self, event: EventBase, state_events: StateMap[EventBase]
    ) -> tuple[bool, dict[str, Any] | None]:
        """Notes the files an event names against its room; never refuses (the school's rules
        are the Gatekeeper's). A failure here leaves a file unreachable, never open."""
        try:
            media = local_media_in(event.content, self._api.server_name)
            if media:
                await self._directory.run(
                    "sferum_note_media", rooms.note_media_txn, event.room_id, media
                )
        except Exception:
            logger.exception("synapse_sferum: could not note the files of %s", event.event_id)
        return True, None

    async def may_fetch(self, user_id: str, server_name: str, media_id: str, admin: bool) -> bool:
        try:
            local = server_name == self._api.server_name
            operator = admin or user_id == self._bot
            uploader = shares_a_room = False
            if local and not operator:
                uploader, shares_a_room = await self._directory.run(
                    "sferum_media_facts", compat.media_facts_txn, user_id, media_id
                )
            return may_fetch_media(
                local=local, uploader=uploader, shares_a_room=shares_a_room, operator=operator
            )
        except Exception:
            logger.exception("synapse_sferum: media check of %s failed; refusing", media_id)
            return False
