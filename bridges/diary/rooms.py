"""Where the bridge's messages go: the module's provisioned rooms, by their alias-scheme names.

A pupil's diary room has no alias in the homeserver's directory (anyone signed in could look it
up there), so the bridge asks the module's admin API (`rooms`), which keeps every provisioned
room. A room once found is remembered for the process's life (a provisioned room never moves);
one not found yet is asked for again at the next sync.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from bridges.diary.matrix import MatrixRefused, MatrixUnavailable

logger = logging.getLogger(__name__)


class RoomDirectory:
    def __init__(self, admin_api_url: str, admin_api_secret: str, timeout: float = 15):
        self._url = f"{admin_api_url}/rooms"
        self._headers = {"Authorization": f"Bearer {admin_api_secret}"}
        self._timeout = aiohttp.ClientTimeout(timeout)
        self._found: dict[str, str] = {}

    async def resolve(self, alias_localpart: str) -> str | None:
        """The room ID of `#<alias_localpart>`'s room, or None if it does not exist (yet)."""
        if alias_localpart not in self._found:
            rooms = await self._ask([alias_localpart])
            self._found.update(rooms)
        return self._found.get(alias_localpart)

    async def _ask(self, aliases: list[str]) -> dict[str, str]:
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as http,
                http.post(self._url, json={"aliases": aliases}, headers=self._headers) as reply,
            ):
                body: Any = await reply.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise MatrixUnavailable(f"asking {self._url} for {aliases}: {e!r}") from e
        if reply.status >= 500:
            raise MatrixUnavailable(f"{self._url}: {reply.status} {body}")
        rooms = body.get("rooms") if isinstance(body, dict) else None
        if reply.status != 200 or not isinstance(rooms, dict):
            raise MatrixRefused(f"{self._url}: {reply.status} {body}")
        return {str(alias): str(room_id) for alias, room_id in rooms.items()}
