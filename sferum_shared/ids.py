"""The three kinds of identifier the platform passes around, told apart by type.

A roster person's sourcedId, a Matrix user ID and a Matrix room ID are all strings; mixing
them up (a person ID where a user ID belongs) is the mistake these types let mypy catch.
"""

from __future__ import annotations

from typing import NewType

PersonId = NewType("PersonId", str)  # a OneRoster sourcedId of a person
UserId = NewType("UserId", str)  # a Matrix user ID, `@localpart:server`
RoomId = NewType("RoomId", str)  # a Matrix room ID, `!opaque:server` or `!opaque` (v12)


def server_of(user_id: str) -> str:
    """The server part of a Matrix user ID: everything after the first colon (ports included)."""
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def localpart_of(user_id: str) -> str:
    """The localpart of a Matrix user ID: between the sigil and the first colon."""
    return user_id[1:].split(":", 1)[0]
