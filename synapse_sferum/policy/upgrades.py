"""What the platform carries over when it upgrades one of its rooms (docs/rooms-and-rules.md,
«Year end»).

Synapse copies power levels, join rules, name, topic and a few more, and a space's children,
but no custom state. The reconcile puts back what it plans (the kind event, names, the call and
invite widgets, space links, members); what it cannot rebuild is copied from the old room.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sferum_shared import matrix

WIDGET_LAYOUT = "io.element.widgets.layout"
# Placed by others than the reconcile (the diary bridge's mini-app, imported sticker packs).
CARRIED_TYPES = frozenset(
    {matrix.WIDGETS, WIDGET_LAYOUT, matrix.IMAGE_PACK, matrix.PONIES_ROOM_EMOTES}
)

StateKey = tuple[str, str]


def replacement_room(
    event_type: str, state_key: str | None, sender: str, content: Mapping[str, Any], bot: str
) -> str | None:
    """The room that replaces this one, if the event is the platform's tombstone."""
    if event_type != matrix.TOMBSTONE or state_key != "" or sender != bot:
        return None
    replacement = content.get("replacement_room")
    return replacement if isinstance(replacement, str) and replacement else None


def carried_state(
    old_state: Mapping[StateKey, Mapping[str, Any]],
) -> dict[StateKey, dict[str, Any]]:
    """The old room's state the new room gets as it is: widgets, their layout, image packs."""
    return {
        (event_type, state_key): dict(content)
        for (event_type, state_key), content in old_state.items()
        if event_type in CARRIED_TYPES and content
    }


def stale_space_links(
    old_room_id: str, old_state: Mapping[StateKey, Mapping[str, Any]]
) -> list[tuple[str, str, str]]:
    """(room, event type, state key) of each link that names the old room from elsewhere: its
    parents' `m.space.child` and, for a space, its children's `m.space.parent`. Emptied, they
    stop clients showing the old room beside the new one."""
    links = []
    for (event_type, state_key), content in sorted(old_state.items()):
        if not content:
            continue
        if event_type == matrix.SPACE_PARENT:
            links.append((state_key, matrix.SPACE_CHILD, old_room_id))
        elif event_type == matrix.SPACE_CHILD:
            links.append((state_key, matrix.SPACE_PARENT, old_room_id))
    return links
