"""Matrix clients for integration tests: raw client-server API calls (to see error fields exactly)
and matrix-nio for real client flows."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from typing import Any

import aiohttp
import attrs
from nio import AsyncClient, LoginResponse, RoomMessageText, SyncResponse


@attrs.define
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def reason(self) -> str | None:
        reason = self.body.get("ru.sferum.reason")
        return reason if isinstance(reason, str) else None


@attrs.define
class User:
    base_url: str
    user_id: str
    token: str

    async def call(self, method: str, path: str, body: Any = None) -> Reply:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method,
                f"{self.base_url}/_matrix/client/v3{path}",
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
            ) as response,
        ):
            return Reply(response.status, await response.json(content_type=None) or {})

    async def resolve(self, alias: str) -> str:
        reply = await self.call("GET", f"/directory/room/{urllib.parse.quote(alias)}")
        assert reply.status == 200, (alias, reply)
        room_id: str = reply.body["room_id"]
        return room_id

    async def joined_rooms(self) -> set[str]:
        reply = await self.call("GET", "/joined_rooms")
        assert reply.status == 200, reply
        return set(reply.body["joined_rooms"])

    async def members(self, room_id: str) -> set[str]:
        reply = await self.call("GET", f"/rooms/{urllib.parse.quote(room_id)}/joined_members")
        assert reply.status == 200, reply
        return set(reply.body["joined"])

    async def create_room(self, **body: Any) -> Reply:
        return await self.call("POST", "/createRoom", body)

    async def send_text(self, room_id: str, text: str) -> Reply:
        txn = f"t{time.monotonic_ns()}"
        return await self.call(
            "PUT",
            f"/rooms/{urllib.parse.quote(room_id)}/send/m.room.message/{txn}",
            {"msgtype": "m.text", "body": text},
        )

    async def put_state(self, room_id: str, event_type: str, content: Any, key: str = "") -> Reply:
        return await self.call(
            "PUT", f"/rooms/{urllib.parse.quote(room_id)}/state/{event_type}/{key}", content
        )


async def login(base_url: str, user_id: str, password: str) -> User:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base_url}/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user_id},
                "password": password,
            },
        ) as response,
    ):
        body = await response.json()
        assert response.status == 200, body
        return User(base_url, body["user_id"], body["access_token"])


async def nio_client(base_url: str, user_id: str, password: str) -> AsyncClient:
    client = AsyncClient(base_url, user_id)
    response = await client.login(password, device_name="sferum-tests")
    assert isinstance(response, LoginResponse), response
    return client


async def wait_for_text(
    client: AsyncClient, room_id: str, needle: str, timeout: float = 20
) -> str:
    """Syncs until a text message containing `needle` shows up in the room; returns its body."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await client.sync(timeout=1000)
        if isinstance(response, SyncResponse):
            room = response.rooms.join.get(room_id)
            for event in room.timeline.events if room else []:
                if isinstance(event, RoomMessageText) and needle in event.body:
                    return event.body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{needle!r} did not arrive in {room_id} within {timeout}s")
