"""Glue for `policy.stickers`: puts the platform's image packs into the spaces, and keeps every
member's pack-rooms account data listing the spaces they are in (docs/rooms-and-rules.md
«Stickers»). Runs where background tasks run: after `sferumctl stickers import` at once, and on
every reconcile interval for people who joined since."""

from __future__ import annotations

import logging
from typing import Any

from synapse.module_api import ModuleApi

from sferum_shared import matrix
from sferum_shared.rooms import RoomKey, RoomKind
from synapse_sferum.policy import stickers
from synapse_sferum.sending import send_event
from synapse_sferum.service import DirectoryService

logger = logging.getLogger(__name__)

PACK_STATE = (matrix.IMAGE_PACK, matrix.PONIES_ROOM_EMOTES)
PACK_ROOMS_DATA = (matrix.IMAGE_PACK_ROOMS, matrix.PONIES_EMOTE_ROOMS)


class StickerPacks:
    def __init__(self, api: ModuleApi, directory: DirectoryService, bot_user_id: str):
        self._api = api
        self._directory = directory
        self._bot = bot_user_id

    async def target_spaces(self, class_id: str | None) -> list[str]:
        """The school's pack goes into every school and class space; a class's into its own."""
        if class_id is not None:
            room_id = await self._directory.room_id(RoomKey(RoomKind.CLASS_SPACE, class_id))
            return [] if room_id is None else [room_id]
        schools = await self._directory.rooms_of_kind(RoomKind.SCHOOL_SPACE)
        classes = await self._directory.rooms_of_kind(RoomKind.CLASS_SPACE)
        return sorted({*schools.values(), *classes.values()})

    async def publish(self, room_ids: list[str], state_key: str, content: dict[str, Any]) -> None:
        for room_id in room_ids:
            for event_type in PACK_STATE:
                await send_event(
                    self._api, self._bot, room_id, event_type, content, state_key=state_key
                )

    async def sync_members(self) -> int:
        """Brings every linked member's pack-rooms account data in line; returns how many
        accounts changed. Nothing to do (and nothing read per user) while no pack exists."""
        packs = await self._packs_by_space()
        if not packs:
            return 0
        wanted: dict[str, dict[str, frozenset[str]]] = {}
        for room_id, keys in packs.items():
            for user_id in await self._directory.planned_members(room_id):
                wanted.setdefault(user_id, {})[room_id] = keys
        changed = 0
        for user_id in sorted(set((await self._directory.all_links()).values())):
            try:
                changed += await self._sync_member(user_id, wanted.get(user_id, {}))
            except Exception:
                logger.exception("synapse_sferum: the sticker packs of %s failed", user_id)
        return changed

    async def _packs_by_space(self) -> dict[str, frozenset[str]]:
        spaces = await self.target_spaces(None)
        packs: dict[str, frozenset[str]] = {}
        for room_id in spaces:
            state = await self._api.get_room_state(room_id, [(matrix.IMAGE_PACK, None)])
            keys = frozenset(
                key
                for (_, key), event in state.items()
                if key in stickers.PLATFORM_PACKS and event.content.get("images")
            )
            if keys:
                packs[room_id] = keys
        return packs

    async def _sync_member(self, user_id: str, wanted: dict[str, frozenset[str]]) -> int:
        manager = self._api.account_data_manager
        changed = 0
        for data_type in PACK_ROOMS_DATA:
            current = await manager.get_global(user_id, data_type)
            if current is None and not wanted:
                continue
            merged = stickers.merged_pack_rooms(current, wanted)
            if merged != current:
                await manager.put_global(user_id, data_type, merged)
                changed = 1
        return changed
