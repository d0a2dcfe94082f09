"""School stickers (MSC2545 image packs): the pack's state content, and the account data that
makes every member's clients offer it, merged with the member's own.

The school's pack lives in the school space and in every class space (pupils and guardians are
not in the school space, and a client can only read packs of rooms its user is in); a class's
own pack lives in its class space. Clients read packs from the rooms listed in the user's
account data (`m.image_pack.rooms`, and `im.ponies.emote_rooms` that FluffyChat reads), so the
platform lists the spaces each member is in, and leaves every other entry as the user set it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

# The platform's packs, as state keys: one school-wide, one per class.
SCHOOL_PACK = "ru.sferum.school"
CLASS_PACK = "ru.sferum.class"
PLATFORM_PACKS = frozenset({SCHOOL_PACK, CLASS_PACK})


@attrs.frozen
class PackImage:
    shortcode: str
    url: str  # mxc://
    mimetype: str
    size: int
    width: int
    height: int


def pack_content(display_name: str, images: list[PackImage]) -> dict[str, Any]:
    """The pack as both `m.room.image_pack` and `im.ponies.room_emotes` carry it."""
    return {
        "pack": {"display_name": display_name, "usage": ["sticker", "emoticon"]},
        "images": {
            image.shortcode: {
                "url": image.url,
                "body": image.shortcode,
                "info": {
                    "mimetype": image.mimetype,
                    "size": image.size,
                    "w": image.width,
                    "h": image.height,
                },
            }
            for image in images
        },
    }


PackRooms = Mapping[str, frozenset[str]]  # room ID -> the platform's pack state keys there


def merged_pack_rooms(current: Mapping[str, Any] | None, wanted: PackRooms) -> dict[str, Any]:
    """The user's pack-rooms account data with the platform's packs as `wanted`: the user's
    own entries (other rooms, other packs, their settings) are kept, the platform's entries of
    rooms the user is no longer in are taken out."""
    content = dict(current or {})
    rooms_in = content.get("rooms")
    rooms: dict[str, Any] = dict(rooms_in) if isinstance(rooms_in, Mapping) else {}
    for room_id in list(rooms):
        packs = rooms[room_id]
        if not isinstance(packs, Mapping):
            continue
        kept = {
            key: value
            for key, value in packs.items()
            if key not in PLATFORM_PACKS or key in wanted.get(room_id, ())
        }
        if kept:
            rooms[room_id] = kept
        else:
            del rooms[room_id]
    for room_id, keys in wanted.items():
        packs = rooms.get(room_id)
        packs = dict(packs) if isinstance(packs, Mapping) else {}
        for key in sorted(keys):
            packs.setdefault(key, {})
        rooms[room_id] = packs
    content["rooms"] = rooms
    return content
