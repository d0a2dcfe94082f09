"""Events the module sends in someone's name (the platform's bot, a teacher's automatic reply,
an admin's article from its author, an erased person's redactions): built one way, so every
sender gets the same shape."""

from __future__ import annotations

from typing import Any

from synapse.module_api import ModuleApi


async def send_event(
    api: ModuleApi,
    sender: str,
    room_id: str,
    event_type: str,
    content: dict[str, Any],
    *,
    state_key: str | None = None,
    redacts: str | None = None,
) -> str:
    """Sends the event through Synapse's checks like a client's; returns its event ID."""
    event: dict[str, Any] = {
        "type": event_type,
        "room_id": room_id,
        "sender": sender,
        "content": content,
    }
    if state_key is not None:
        event["state_key"] = state_key
    if redacts is not None:
        event["redacts"] = redacts  # room versions before 11 read it from the top level
    sent = await api.create_and_send_event_into_room(event)
    return str(sent.event_id)
