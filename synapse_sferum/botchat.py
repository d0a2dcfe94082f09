"""The platform bot's one-to-one chats with the school's adults, where it takes commands
(quiet hours: `quiet_hours`; invite links: `invites`): who is in a room, and the bot's words."""

from __future__ import annotations

from synapse.module_api import EventBase, ModuleApi
from synapse.types import StateMap

from sferum_shared import matrix
from synapse_sferum.sending import send_event


def joined(state: StateMap[EventBase]) -> set[str]:
    """The users joined to the room, from its state."""
    return {
        key[1]
        for key, event in state.items()
        if key[0] == matrix.MEMBER and event.membership == "join"
    }


def is_chat_with_bot(state: StateMap[EventBase], sender: str, bot: str) -> bool:
    """The room is the sender's one-to-one chat with the bot (both joined, nobody else)."""
    return joined(state) == {sender, bot}


async def say(api: ModuleApi, bot: str, room_id: str, text: str) -> None:
    """A notice from the bot (a notice: no client, and no bot, answers it)."""
    await send_event(api, bot, room_id, matrix.MESSAGE, {"msgtype": "m.notice", "body": text})
