"""Where the bridge's messages go: the module's provisioned rooms, by their alias-scheme names.

A pupil's diary room has no alias in the homeserver's directory (anyone signed in could look it
up there), so the bridge asks the module's admin API (`rooms`), which keeps every provisioned
room. A room once found is remembered for the process's life (a provisioned room never moves);
one not found yet is asked for again at the next sync.
"""

from __future__ import annotations

import logging

import aiohttp

from bridges.diary.matrix import MatrixRefused, MatrixUnavailable
from sferum_shared.adminapi import AdminApi, Refused, Unexpected, parse_rooms
from sferum_shared.http import Unreachable
from sferum_shared.ids import RoomId
from sferum_shared.web import send

logger = logging.getLogger(__name__)


class RoomDirectory:
    def __init__(self, admin_api_url: str, admin_api_secret: str, timeout: float = 15):
        self._api = AdminApi(admin_api_url, admin_api_secret)
        self._timeout = aiohttp.ClientTimeout(timeout)
        self._found: dict[str, RoomId] = {}

    async def resolve(self, alias_localpart: str) -> RoomId | None:
        """The room ID of `#<alias_localpart>`'s room, or None if it does not exist (yet)."""
        if alias_localpart not in self._found:
            rooms = await self._ask([alias_localpart])
            self._found.update(rooms)
        return self._found.get(alias_localpart)

    async def _ask(self, aliases: list[str]) -> dict[str, RoomId]:
        try:
            async with aiohttp.ClientSession(timeout=self._timeout) as http:
                return parse_rooms(await send(http, self._api.rooms(aliases)))
        except Unreachable as e:
            raise MatrixUnavailable(f"asking for rooms {aliases}: {e}") from e
        except Refused as e:
            if e.status >= 500:
                raise MatrixUnavailable(f"asking for rooms {aliases}: {e}") from e
            raise MatrixRefused(f"asking for rooms {aliases}: {e}") from e
        except Unexpected as e:
            raise MatrixRefused(f"asking for rooms {aliases}: {e}") from e
