"""Matrix clients for integration tests: raw client-server API calls (to see error fields exactly)
and matrix-nio for real client flows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
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
        return await self._request(method, f"/_matrix/client/v3{path}", body)

    async def call_path(self, method: str, path: str, body: Any = None) -> Reply:
        """Any path of the server, as this user (unstable endpoints, say)."""
        return await self._request(method, path, body)

    async def call_admin(self, method: str, path: str, body: Any = None) -> Reply:
        """Synapse's admin API (`/_synapse/admin/v1/...`): for a server admin's account."""
        return await self._request(method, f"/_synapse/admin{path}", body)

    async def _request(self, method: str, path: str, body: Any) -> Reply:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method,
                f"{self.base_url}{path}",
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

    async def room(self, alias: str) -> str:
        """The room an alias of the platform's scheme names, found as the user's client finds
        it: through the directory, or, for a pupil's diary (which has no alias there), among the
        user's own rooms by the platform's kind event."""
        localpart = alias[1:].split(":")[0]
        if not localpart.startswith("diary-"):
            return await self.resolve(alias)
        person = localpart.removeprefix("diary-")
        for room_id in sorted(await self.joined_rooms()):
            kind = await self.call(
                "GET", f"/rooms/{urllib.parse.quote(room_id)}/state/ru.sferum.room/"
            )
            facts = (kind.body.get("kind"), kind.body.get("person"))
            if kind.status == 200 and facts == ("diary", person):
                return room_id
        raise AssertionError(f"{self.user_id} is in no room {alias}")

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
        return await self.send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})

    async def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> Reply:
        txn = f"t{time.monotonic_ns()}"
        return await self.call(
            "PUT", f"/rooms/{urllib.parse.quote(room_id)}/send/{event_type}/{txn}", content
        )

    async def put_state(self, room_id: str, event_type: str, content: Any, key: str = "") -> Reply:
        return await self.call(
            "PUT", f"/rooms/{urllib.parse.quote(room_id)}/state/{event_type}/{key}", content
        )


async def upload_media(
    user: User, data: bytes, filename: str = "photo.png", content_type: str = "image/png"
) -> Reply:
    """POST /media/v3/upload as the user: the answer (`content_uri` when it went through)."""
    query = urllib.parse.urlencode({"filename": filename})
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{user.base_url}/_matrix/media/v3/upload?{query}",
            data=data,
            headers={"Authorization": f"Bearer {user.token}", "Content-Type": content_type},
        ) as response,
    ):
        return Reply(response.status, await response.json(content_type=None) or {})


async def _get_media(user: User, mxc: str, thumbnail: bool) -> tuple[int, bytes]:
    server, media_id = mxc.removeprefix("mxc://").split("/")
    kind = "thumbnail" if thumbnail else "download"
    query = "?width=32&height=32" if thumbnail else ""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{user.base_url}/_matrix/client/v1/media/{kind}/{server}/{media_id}{query}",
            headers={"Authorization": f"Bearer {user.token}"},
        ) as response,
    ):
        return response.status, await response.read()


async def fetch_media(user: User, mxc: str, thumbnail: bool = False) -> int:
    """The status of downloading (or thumbnailing) a file as the user, authenticated media."""
    status, _ = await _get_media(user, mxc, thumbnail)
    return status


async def download_media(user: User, mxc: str) -> bytes:
    """The file's bytes, downloaded as the user (authenticated media); it must be there."""
    status, data = await _get_media(user, mxc, thumbnail=False)
    assert status == 200, (status, data[:200])
    return data


@contextlib.asynccontextmanager
async def mautrix_client(base_url: str, user_id: str, password: str) -> AsyncIterator[Any]:
    """mautrix-python's client (a client we did not write), signed in with a password."""
    from mautrix.client import Client
    from mautrix.types import LoginType

    client = Client(base_url=base_url)
    await client.login(
        identifier=user_id,
        login_type=LoginType.PASSWORD,
        password=password,
        store_access_token=True,
    )
    try:
        yield client
    finally:
        await client.api.session.close()


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


NEWCOMER_PASSWORD = "correct horse battery staple"


@attrs.define
class NewUser:
    """A newcomer registering as Element does: a linking code, then a phone checked by SMS.

    Each step returns the server's reply, so tests can assert on the exact refusal.
    """

    base_url: str
    outbox: Path  # the `file` SMS gateway's outbox
    password: str = NEWCOMER_PASSWORD
    session: str | None = None
    client_secret: str = attrs.field(factory=lambda: secrets.token_urlsafe(16))
    sid: str | None = None
    submit_url: str | None = None

    async def _post(self, url: str, body: Any) -> Reply:
        async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
            return Reply(response.status, await response.json(content_type=None) or {})

    async def register(self, auth: dict[str, Any] | None = None) -> Reply:
        body: dict[str, Any] = {"password": self.password, "username": "anything"}
        if auth is not None:
            body["auth"] = {**auth, "session": self.session}
        reply = await self._post(f"{self.base_url}/_matrix/client/v3/register", body)
        self.session = reply.body.get("session", self.session)
        return reply

    async def enter_code(self, code: str) -> Reply:
        if self.session is None:
            first = await self.register()
            assert first.status == 401, first
        return await self.register({"type": "m.login.registration_token", "token": code})

    async def ask_sms(self, phone: str, country: str = "RU") -> Reply:
        self.client_secret = secrets.token_urlsafe(16)
        reply = await self._post(
            f"{self.base_url}/_matrix/client/v3/register/msisdn/requestToken",
            {
                "client_secret": self.client_secret,
                "country": country,
                "phone_number": phone,
                "send_attempt": 1,
            },
        )
        self.sid = reply.body.get("sid")
        self.submit_url = reply.body.get("submit_url")
        return reply

    def last_sms_code(self, to: str) -> str:
        for line in reversed(self.outbox.read_text(encoding="utf-8").splitlines()):
            sms = json.loads(line)
            if sms["to"] == to:
                found = re.search(r"\b(\d{6})\b", sms["text"])
                assert found, sms
                return found.group(1)
        raise AssertionError(f"no SMS to {to} in {self.outbox}")

    async def submit_sms(self, code: str) -> Reply:
        assert self.submit_url and self.sid
        return await self._post(
            self.submit_url,
            {"sid": self.sid, "client_secret": self.client_secret, "token": code},
        )

    async def finish(self) -> Reply:
        return await self.register(
            {
                "type": "m.login.msisdn",
                "threepid_creds": {"sid": self.sid, "client_secret": self.client_secret},
            }
        )

    async def verify_phone(self, phone: str) -> Reply:
        """requestToken, read the SMS, submit its code; returns the submit reply."""
        asked = await self.ask_sms(phone)
        assert asked.status == 200, asked
        return await self.submit_sms(self.last_sms_code("+" + asked.body["msisdn"]))

    async def complete(self, code: str, phone: str) -> Reply:
        """The whole registration, each step checked: returns the final reply (the account)."""
        entered = await self.enter_code(code)
        assert entered.status == 401, entered
        assert "m.login.registration_token" in entered.body["completed"], entered
        submitted = await self.verify_phone(phone)
        assert submitted.status == 200 and submitted.body.get("success") is True, submitted
        done = await self.finish()
        assert done.status == 200, done
        return done
