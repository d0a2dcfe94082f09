"""Glue for `policy.photos`: nobody wears, or hangs on a room, a photo someone else uploaded.

The global avatar is checked in front of Synapse's profile handler (compat says why no callback
can refuse it), a room's avatar in `check_event_allowed` (`access.py`, which also makes every
member event show the global avatar).
"""

from __future__ import annotations

from typing import Any

from synapse.module_api import ModuleApi

from synapse_sferum import compat, policy
from synapse_sferum.policy.media import local_media_id
from synapse_sferum.refusals import forbidden
from synapse_sferum.service import DirectoryService

_REFUSAL = "Only a photo you uploaded yourself can be your photo (see ru.sferum.reason)"


class Photos:
    def __init__(self, api: ModuleApi, directory: DirectoryService, bot_user_id: str):
        self._api = api
        self._directory = directory
        self._bot = bot_user_id

    def register(self) -> None:
        compat.guard_avatar_changes(self._api, self.check_avatar)

    async def check_avatar(self, user_id: str, url: Any) -> None:
        """Raises the refusal when `user_id` may not show `url` as a photo; the platform may."""
        if user_id == self._bot:
            return
        media_id = local_media_id(url, self._api.server_name) if isinstance(url, str) else None
        own_upload = False
        if media_id is not None:
            uploader, _ = await self._directory.run(
                "sferum_avatar_facts", compat.media_facts_txn, user_id, media_id
            )
            own_upload = uploader == user_id
        decision = policy.may_use_avatar(
            url, server_name=self._api.server_name, own_upload=own_upload
        )
        if not decision.allowed:
            raise forbidden(decision, _REFUSAL)
