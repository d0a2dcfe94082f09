"""How school news looks in a class news room: its pins (docs/rooms-and-rules.md «Articles and
pins»); the author's line over an article is `sferum_shared/byline.py`."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence


def pinned_ids(content: Mapping[str, object]) -> list[str]:
    """The event IDs of an `m.room.pinned_events` content, in order; anything else is dropped."""
    pinned = content.get("pinned")
    if not isinstance(pinned, list):
        return []
    return [event_id for event_id in pinned if isinstance(event_id, str)]


def class_pins(
    school_pins: Sequence[str],
    copies: Mapping[str, str],
    current: Sequence[str],
    mirrored: Collection[str],
) -> list[str]:
    """A class news room's pins: the copies of the school's pins in the school's order (a post
    with no copy here is skipped), then the class's own pins. The school decides which copies
    are pinned, so a copy the school no longer pins is dropped.

    `copies` maps a school post to its copy in this room; `mirrored` holds which of `current`
    are copies."""
    ours = [copies[post] for post in school_pins if post in copies]
    own = [event_id for event_id in current if event_id not in mirrored]
    return list(dict.fromkeys([*ours, *own]))
