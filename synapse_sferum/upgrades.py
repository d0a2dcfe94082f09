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

import attrs
from synapse.events import EventBase
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError
from synapse.types import StateMap

from sferum_shared import matrix
from sferum_shared.rooms import RoomKey
from sferum_shared.vocabulary import Key
from synapse_sferum import compat
from synapse_sferum.compat import EventCallback
from synapse_sferum.policy.news import pinned_ids
from synapse_sferum.policy.upgrades import (
    CARRIED_TYPES,
    UpgradeRefusal,
    carried_state,
    pinned_copy,
    replacement_room,
    stale_space_links,
    upgrade_refusal,
)
from synapse_sferum.sending import send_event
from synapse_sferum.service import DirectoryService

logger = logging.getLogger(__name__)


@attrs.frozen
class UpgradedRoom:
    room_id: str
    replacement_room: str
    version: str
    key: RoomKey

    def to_json(self) -> dict[str, str]:
        return {
            "room_id": self.room_id,
            "replacement_room": self.replacement_room,
            "version": self.version,
            "kind": self.key.kind.value,
            "scope": self.key.scope_id,
        }


class UpgradeRefused(Exception):
    def __init__(self, refusal: UpgradeRefusal):
        super().__init__(refusal.message)
        self.refusal = refusal


_LINKS = (matrix.SPACE_PARENT, matrix.SPACE_CHILD)
_READ = [(t, None) for t in (*sorted(CARRIED_TYPES), *_LINKS, matrix.PINNED_EVENTS)]


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
        compat.register_event_callbacks(self._api, on_new_event=EventCallback(self.on_new_event))

    async def upgrade(self, room: str, version: str | None) -> UpgradedRoom:
        """Upgrades a provisioned room (its ID or alias) as the platform's bot, to `version`
        or the server's default (`sferumctl rooms upgrade`); UpgradeRefused says why not.
        The tombstone then takes the path of every platform upgrade (`on_new_event`)."""
        room_id = await self._room_id(room)
        key = None if room_id is None else await self._directory.room_key(room_id)
        on_record = None if key is None else await self._directory.room_id(key)
        versions = compat.room_versions(self._api)
        wanted = version or versions[0]
        refusal = upgrade_refusal(room, room_id, key, on_record, wanted, versions)
        if refusal is not None:
            raise UpgradeRefused(refusal)
        assert room_id is not None and key is not None  # checked by the rule just before
        logger.info("synapse_sferum: upgrading %s (%s) to version %s", room_id, key, wanted)
        new_room_id = await compat.upgrade_room(self._api, self._bot, room_id, wanted)
        return UpgradedRoom(room_id, new_room_id, wanted, key)

    async def _room_id(self, room: str) -> str | None:
        """The room an ID or alias names on this server, or None."""
        if room.startswith("#"):
            try:
                room_id, _ = await self._api.lookup_room_alias(room)
            except SynapseError:
                return None
            return room_id
        if not room.startswith("!"):
            return None
        create = await self._api.get_room_state(room, [(matrix.CREATE, "")])
        return room if create else None

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
        pins = pinned_ids(contents.get((matrix.PINNED_EVENTS, ""), {}))
        if pins:
            await self._carry_pins(old_room_id, new_room_id, pins)

    async def _carry_pins(self, old_room_id: str, new_room_id: str, pins: list[str]) -> None:
        """Posts a copy of each pinned message in the new room and pins the copies, in order
        (policy.upgrades.pinned_copy says which are carried and how)."""
        copies = []
        for event_id in pins:
            try:
                copy_id = await self._copy_pinned(old_room_id, new_room_id, event_id)
            except Exception:
                logger.exception("synapse_sferum: could not carry the pin %s over", event_id)
                continue
            if copy_id is not None:
                copies.append(copy_id)
        if copies:
            await self._send_state(new_room_id, matrix.PINNED_EVENTS, "", {"pinned": copies})

    async def _copy_pinned(self, old_room_id: str, new_room_id: str, event_id: str) -> str | None:
        event = await compat.room_event(self._api, event_id, old_room_id)
        if event is None or event.is_state():
            return None
        member = await self._directory.get_member(event.sender)
        author = member.real_name if member else event.sender
        origin = {"room_id": old_room_id, "event_id": event_id, "sender": event.sender}
        content = pinned_copy(event.type, event.content, author, origin)
        if content is None:
            return None
        copy_id = await send_event(self._api, self._bot, new_room_id, event.type, content)
        school_post = content.get(Key.MIRROR_OF, {}).get("event_id")
        if isinstance(school_post, str) and await self._directory.claim_mirror(
            school_post, new_room_id
        ):
            # the school's post now has this copy in the new room: its pins, edits and
            # redaction follow there (synapse_sferum/pins.py, mirror.py)
            await self._directory.set_mirror_event(school_post, new_room_id, copy_id)
        return copy_id

    async def _send_state(
        self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> None:
        await send_event(self._api, self._bot, room_id, event_type, content, state_key=state_key)
