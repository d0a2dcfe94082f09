"""What the platform carries over when it upgrades one of its rooms (docs/rooms-and-rules.md,
«Year end»).

Synapse copies power levels, join rules, name, topic and a few more, and a space's children,
but no custom state. The reconcile puts back what it plans (the kind event, names, the call and
invite widgets, space links, members); what it cannot rebuild is copied from the old room.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import attrs

from sferum_shared import matrix
from sferum_shared.byline import byline_body, byline_html
from sferum_shared.rooms import RoomKey
from sferum_shared.vocabulary import Key

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


@attrs.frozen
class UpgradeRefusal:
    """Why `sferumctl rooms upgrade` cannot upgrade a room: an HTTP status, a Matrix errcode
    and a sentence that says what to do."""

    status: int
    errcode: str
    message: str


def upgrade_refusal(
    room: str,
    room_id: str | None,
    key: RoomKey | None,
    on_record: str | None,
    version: str,
    versions: tuple[str, Collection[str]],
) -> UpgradeRefusal | None:
    """Whether the platform may upgrade `room` (as given: an ID or an alias) to `version`.

    `room_id` is the room it names (None: no such room), `key` its kind if the platform made
    it, `on_record` the room now on record for that kind, `versions` the server's default room
    version and all it knows.
    """
    if room_id is None:
        return UpgradeRefusal(404, "M_NOT_FOUND", f"there is no room {room} on this server")
    if key is None:
        return UpgradeRefusal(
            400,
            "M_INVALID_PARAM",
            f"{room} is not a room the platform made; only provisioned rooms are upgraded here",
        )
    if on_record != room_id:
        return UpgradeRefusal(
            400,
            "M_INVALID_PARAM",
            f"{room} was upgraded already; upgrade its replacement {on_record} instead",
        )
    default, known = versions
    if version not in known:
        listed = ", ".join(sorted(known, key=_version_order))
        return UpgradeRefusal(
            400,
            "M_UNSUPPORTED_ROOM_VERSION",
            f"room version {version!r} is not one this server knows: {listed} "
            f"(its default is {default})",
        )
    return None


def _version_order(version: str) -> tuple[int, str]:
    """Numbered versions in their order (2 before 10), unstable ones after them."""
    return (int(version), "") if version.isdigit() else (1 << 30, version)


# Pins. A pinned event ID names an event of the old room, which the new room does not have:
# the platform posts a copy of each pinned message in the new room and pins the copies, in the
# same order. Messages only (text, notices, images, files, with their HTML and files as they
# are); a poll, a sticker, a state event or a redacted post stays pinned in the old room alone.
PINNED_TYPES = frozenset({matrix.MESSAGE})


def pinned_copy(
    event_type: str,
    content: Mapping[str, Any],
    author: str,
    origin: Mapping[str, str],
) -> dict[str, Any] | None:
    """The copy of a pinned event for the new room, or None if it is not carried.

    `author` is the sender's real name, put in front as on school news copies; a copy of school
    news (`Key.MIRROR_OF`) has its author's line already and keeps its mark, so the class news
    pins still follow the school's. `origin` is the original's {room_id, event_id, sender}.
    Relations (a reply, a thread, an edit) name events of the old room and are dropped; the
    content is the post as first sent.
    """
    if event_type not in PINNED_TYPES or not isinstance(content.get("body"), str):
        return None  # another kind of event, or redacted
    copy = {k: v for k, v in content.items() if k != "m.relates_to"}
    if Key.MIRROR_OF not in copy:
        if "url" in copy and "filename" not in copy:
            copy["filename"] = copy["body"]  # a file's body is its name (MSC2530)
        copy["body"] = byline_body(author, copy["body"])
        if isinstance(copy.get("formatted_body"), str):
            copy["formatted_body"] = byline_html(author, copy["formatted_body"])
    copy[Key.PIN_OF] = dict(origin)
    return copy
