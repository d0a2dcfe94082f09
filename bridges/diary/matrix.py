"""The bridge's Matrix side: message contents (pure) and a thin matrix-nio client.

The bridge acts as the platform's bot through the application service's token: matrix-nio has
no appservice support, so the client simply carries the `as_token` as its access token (the
homeserver then acts as the registration's `sender_localpart`), and needs no login or sync.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    RoomMessagesError,
    RoomPutStateError,
    RoomRedactError,
    RoomSendError,
)

from bridges.diary.plan import Post
from sferum_shared import matrix
from sferum_shared.vocabulary import Key

logger = logging.getLogger(__name__)

_RETRIES = 5


def message_content(post: Post) -> dict[str, Any]:
    return {
        "msgtype": "m.notice",
        "body": post.rendered.body,
        "format": "org.matrix.custom.html",
        "formatted_body": post.rendered.html,
        Key.DIARY_MARKER: {"key": post.key, "hash": post.content_hash},
    }


def edit_content(post: Post, original_event_id: str) -> dict[str, Any]:
    """An `m.replace` edit; the fallback body starts with "* " as the spec suggests."""
    new = message_content(post)
    return {
        **new,
        "body": f"* {new['body']}",
        "formatted_body": f"* {new['formatted_body']}",
        "m.new_content": {k: v for k, v in new.items() if k != Key.DIARY_MARKER},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original_event_id},
    }


def marker_of(event_content: dict[str, Any]) -> tuple[str, str] | None:
    marker = event_content.get(Key.DIARY_MARKER)
    if isinstance(marker, dict) and isinstance(marker.get("key"), str):
        return marker["key"], str(marker.get("hash"))
    return None


class MatrixUnavailable(Exception):
    """The homeserver could not be reached or kept failing: try the whole step again later."""


class MatrixRefused(Exception):
    """The homeserver refused this one request (e.g. the bot is not in the room)."""


class BridgeClient:
    def __init__(self, homeserver: str, bot_user_id: str, as_token: str, timeout: float = 30):
        config = AsyncClientConfig(request_timeout=timeout, max_timeouts=1, max_limit_exceeded=0)
        self._client = AsyncClient(homeserver, bot_user_id, config=config)
        self._client.access_token = as_token
        self._client.user_id = bot_user_id
        self.bot_user_id = bot_user_id

    async def close(self) -> None:
        await self._client.close()

    async def _call(self, what: str, request: Any) -> Any:
        """Runs a nio request with retries on rate limits and transport errors."""
        delay = 0.5
        for attempt in range(_RETRIES):
            try:
                response = await request()
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                if attempt == _RETRIES - 1:
                    raise MatrixUnavailable(f"{what}: {e!r}") from e
                await asyncio.sleep(delay)
                delay *= 2
                continue
            if not isinstance(response, ErrorResponse):
                return response
            status = response.status_code or ""
            if status == "M_LIMIT_EXCEEDED" or (
                response.transport_response is not None
                and response.transport_response.status >= 500
            ):
                retry = (response.retry_after_ms or delay * 1000) / 1000
                await asyncio.sleep(min(retry, 30))
                delay *= 2
                continue
            return response
        raise MatrixUnavailable(f"{what}: still failing after {_RETRIES} tries")

    async def send(self, room_id: str, content: dict[str, Any], txn: str) -> str:
        response = await self._call(
            f"send to {room_id}",
            lambda: self._client.room_send(room_id, matrix.MESSAGE, content, tx_id=txn),
        )
        if isinstance(response, RoomSendError):
            raise MatrixRefused(f"send to {room_id}: {response.status_code} {response.message}")
        return str(response.event_id)

    async def put_state(
        self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str:
        """Sets a state event (the mini-app's widget); the same content again changes nothing."""
        response = await self._call(
            f"state {event_type} in {room_id}",
            lambda: self._client.room_put_state(room_id, event_type, content, state_key),
        )
        if isinstance(response, RoomPutStateError):
            raise MatrixRefused(
                f"state {event_type} in {room_id}: {response.status_code} {response.message}"
            )
        return str(response.event_id)

    async def redact(self, room_id: str, event_id: str, txn: str) -> None:
        response = await self._call(
            f"redact {event_id}",
            lambda: self._client.room_redact(
                room_id, event_id, reason="Удалено в дневнике", tx_id=txn
            ),
        )
        if isinstance(response, RoomRedactError):
            raise MatrixRefused(f"redact {event_id}: {response.status_code} {response.message}")

    async def find_sent(
        self, room_id: str, key: str, content_hash: str, scan: int = 1000
    ) -> str | None:
        """The event the bot already sent for (key, hash), looking back through the room.

        An edit counts as its original's: the ID returned is the first message of the item.
        """
        start: str | None = None
        seen = 0
        while seen < scan:
            response = await self._call(
                f"messages of {room_id}",
                lambda start=start: self._client.room_messages(room_id, start=start, limit=100),
            )
            if isinstance(response, RoomMessagesError):
                raise MatrixRefused(f"messages of {room_id}: {response.status_code}")
            for event in response.chunk:
                source = getattr(event, "source", {})
                if source.get("sender") != self.bot_user_id:
                    continue
                content = source.get("content", {})
                if marker_of(content) == (key, content_hash):
                    relates = content.get("m.relates_to", {})
                    if relates.get("rel_type") == "m.replace":
                        return str(relates["event_id"])
                    return str(source["event_id"])
            seen += len(response.chunk)
            if not response.chunk or not response.end:
                return None
            start = response.end
        return None
