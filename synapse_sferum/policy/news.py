"""How school news looks in a class news room: the author's line over an article, and the pins
(docs/rooms-and-rules.md «Articles and pins»)."""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Mapping, Sequence

# Block elements of the HTML the Matrix spec allows in `formatted_body`: an inline `<b>` in front
# of one would sit outside it (and before an `<h1>`, read as part of no paragraph at all).
_BLOCK = re.compile(
    r"<\s*(h[1-6]|p|ul|ol|blockquote|pre|table|div|hr|details)\b", re.IGNORECASE
)


def byline_html(author: str, formatted_body: str) -> str:
    """The copy's HTML: a short post reads «<b>Author</b>: text»; an article (any block
    element) gets the author as a paragraph of its own above it, so headings stay headings."""
    name = f"<b>{html.escape(author)}</b>"
    if _BLOCK.search(formatted_body):
        return f"<p>{name}</p>{formatted_body}"
    return f"{name}: {formatted_body}"


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
