"""Who may fetch a file of this server (issue 11): the uploader, and the rooms it was posted in.

Synapse serves any local file to any signed-in account that knows its `mxc://` URI. Photos of
children must not travel further than the rooms they were posted in, so the module notes which
rooms each file appears in (every event, whatever field names it: an image, its thumbnail, an
avatar, an inline <img> in HTML) and lets through only the uploader and those rooms' members.
A person's profile photo is also seen by whoever may contact them (the user directory, a new
direct chat), before any room of theirs carries it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

_MXC = re.compile(r"mxc://([A-Za-z0-9.:\[\]-]+)/([A-Za-z0-9_-]+)")


def local_media_in(content: Mapping[str, Any], server_name: str) -> set[str]:
    """The media IDs of this server's files that an event's content names, anywhere in it."""
    return {media_id for server, media_id in _mxc_uris(content) if server == server_name}


def local_media_id(url: str, server_name: str) -> str | None:
    """The media ID when `url` is exactly an `mxc://` URI of this server, else None."""
    match = _MXC.fullmatch(url)
    return match.group(2) if match and match.group(1) == server_name else None


def _mxc_uris(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        if "mxc://" in value:
            for match in _MXC.finditer(value):
                yield match.group(1), match.group(2)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _mxc_uris(item)
    elif isinstance(value, list):
        for item in value:
            yield from _mxc_uris(item)


def may_fetch_media(
    *, local: bool, uploader: bool, shares_a_room: bool, avatar_of_contact: bool, operator: bool
) -> bool:
    """Remote files (a partner school's, in the staff room) are that server's to guard.

    `avatar_of_contact`: the file is the current profile photo of its uploader, and the asker
    may contact them.
    """
    return not local or uploader or shares_a_room or avatar_of_contact or operator
