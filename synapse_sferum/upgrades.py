"""The platform's upgrades of its rooms: the replacement becomes the kind's room.

Only the platform's bot may upgrade a provisioned room (`m.room.tombstone` is platform state,
and only the bot has the power to send it). When its tombstone appears, the replacement is put
on record in the old room's place and gets the state Synapse does not copy (policy.upgrades);
the reconcile that follows puts in the kind event, widgets, space links and members.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from synapse.events import EventBase
from synapse.module_api import ModuleApi
from synapse.types import StateMap

from sferum_shared import matrix
from synapse_sferum.policy.upgrades import (
    CARRIED_TYPES,
    carried_state,
    replacement_room,
    stale_space_links,
)
from synapse_sferum.sending import send_event
from synapse_sferum.service import DirectoryService

logger = logging.getLogger(__name__)

_READ = [(t, None) for t in (*sorted(CARRIED_TYPES), matrix.SPACE_PARENT, matrix.SPACE_CHILD)]


class RoomUpgrades:
    def __init__(
        self,
        api: ModuleApi,
        directory: DirectoryService,
        bot_user_id: str,
        reconcile: Callable[[], object],
    ):
        self._api = api
        self._directory = directory
        self._bot = bot_user_id
        self._reconcile = reconcile

    def register(self) -> None:
        self._api.register_third_party_rules_callbacks(on_new_event=self.on_new_event)

    async def on_new_event(self, event: EventBase, state_events: StateMap[EventBase]) -> None:
        # One instance acts: the one that runs the reconcile.
        if not self._api.should_run_background_tasks():
            return
        new_room_id = replacement_room(
            event.type, event.get_state_key(), event.sender, event.content, self._bot
        )
        if new_room_id is None:
            return
        key = await self._directory.room_key(event.room_id)
        if key is None or not await self._directory.replace_room(key, event.room_id, new_room_id):
            return  # not a provisioned room, or not the one on record (upgraded already)
        logger.info("synapse_sferum: %s moves from %s to %s", key, event.room_id, new_room_id)
        try:
            await self._carry_over(event.room_id, new_room_id)
        finally:
            self._reconcile()

    async def _carry_over(self, old_room_id: str, new_room_id: str) -> None:
        state = await self._api.get_room_state(old_room_id, _READ)
        contents: dict[tuple[str, str], Any] = {k: e.content for k, e in state.items()}
        for (event_type, state_key), content in carried_state(contents).items():
            await self._send_state(new_room_id, event_type, state_key, content)
        for room_id, event_type, state_key in stale_space_links(old_room_id, contents):
            try:
                await self._send_state(room_id, event_type, state_key, {})
            except Exception:  # a link into a room the bot is not in: nothing to tidy there
                logger.warning("synapse_sferum: could not unlink %s from %s", old_room_id, room_id)

    async def _send_state(
        self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> None:
        await send_event(self._api, self._bot, room_id, event_type, content, state_key=state_key)
