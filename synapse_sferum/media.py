"""Files of this server reach the uploader and the members of the rooms they were posted in.

Glue for `policy.media`: every local event is looked at before Synapse stores it, and the files
it names are noted against its room (before any client can see the event, so the first
download of a photo never finds it unnoted); every download and thumbnail of a local file asks
`may_fetch` first (compat wraps Synapse's media endpoints for that). A profile photo also
reaches whoever may contact its owner (the user directory shows it before any room does).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from synapse.events import EventBase
from synapse.module_api import ModuleApi
from synapse.types import StateMap

from sferum_shared.ids import localpart_of
from synapse_sferum import compat
from synapse_sferum.access import EventCheck
from synapse_sferum.compat import EventVerdict
from synapse_sferum.policy.contact import may_contact
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
        compat.guard_media_downloads(self.may_fetch)

    def noting(self, check: EventCheck) -> EventCheck:
        """`check` (the Gatekeeper's), then the files of the event as it will be stored noted.

        Synapse stops asking further callbacks once one replaces an event (a member event
        given its real name and photo), so noting in a callback of its own would miss exactly
        those: the photo of a member event 404'd for the room it was in.
        """

        async def checked(event: EventBase, state_events: StateMap[EventBase]) -> EventVerdict:
            allowed, replacement = await check(event, state_events)
            if allowed:
                content = replacement.get("content") if replacement else event.content
                await self._note(event, content if isinstance(content, Mapping) else {})
            return allowed, replacement

        return checked

    async def _note(self, event: EventBase, content: Mapping[str, Any]) -> None:
        """Never refuses (the school's rules are the Gatekeeper's). A failure here leaves a file
        unreachable, never open."""
        try:
            media = local_media_in(content, self._api.server_name)
            if media:
                await self._directory.run(
                    "sferum_note_media", rooms.note_media_txn, event.room_id, media
                )
        except Exception:
            logger.exception("synapse_sferum: could not note the files of %s", event.event_id)

    async def may_fetch(self, user_id: str, server_name: str, media_id: str, admin: bool) -> bool:
        try:
            local = server_name == self._api.server_name
            operator = admin or user_id == self._bot
            uploader: str | None = None
            shares_a_room = avatar_of_contact = False
            if local and not operator:
                uploader, shares_a_room = await self._directory.run(
                    "sferum_media_facts", compat.media_facts_txn, user_id, media_id
                )
                if uploader not in (None, user_id) and not shares_a_room:
                    avatar_of_contact = await self._avatar_of_contact(
                        user_id, str(uploader), f"mxc://{server_name}/{media_id}"
                    )
            return may_fetch_media(
                local=local,
                uploader=uploader == user_id,
                shares_a_room=shares_a_room,
                avatar_of_contact=avatar_of_contact,
                operator=operator,
            )
        except Exception:
            logger.exception("synapse_sferum: media check of %s failed; refusing", media_id)
            return False

    async def _avatar_of_contact(self, user_id: str, owner: str, mxc: str) -> bool:
        """The file is `owner`'s profile photo now, and `user_id` may contact them."""
        profile = await self._api.get_profile_for_user(localpart_of(owner))
        if profile.avatar_url != mxc:
            return False
        asker, person = (
            await self._directory.get_member(user_id),
            await self._directory.get_member(owner),
        )
        return may_contact(asker, person).allowed
