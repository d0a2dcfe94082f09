"""The SFU server end to end, in process: WebSocket signalling with JWTs, aiortc peers, media.

No Synapse: tokens are minted with `sfu.tokens.issue` directly, as the auth routes would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from sferum_shared import SYSTEM_CLOCK
from sfu import tokens
from sfu.config import SfuConfig, parse_config
from sfu.grants import CAMERA, MICROPHONE, Grant
from sfu.server import CLOSE_REFUSED, SfuServer
from tests.integration.test_sfu_media import Client, SmallVideo, Tone, client_peer, wait_for

SECRET = "signalling-test-secret-of-enough-length"
ROOM = tokens.room_name("!lesson:school.test")
OTHER_ROOM = tokens.room_name("!other:school.test")


def offline_config(jwt_secret: str) -> SfuConfig:
    """An SFU with no homeserver behind it: the tests mint its tokens with `tokens.issue`."""
    return parse_config(
        {
            "server_name": "school.test",
            "homeserver_url": "http://127.0.0.1:9",
            "admin_api_url": "http://127.0.0.1:9/admin",
            "admin_api_secret": "unused",
            "jwt_secret": jwt_secret,
            "sfu_url": "http://127.0.0.1:9",
        }
    )


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    config = offline_config(SECRET)
    test_server = TestServer(SfuServer(config, SYSTEM_CLOCK).app())
    await test_server.start_server()
    yield test_server
    await test_server.close()


def token(grant: Grant, identity: str, room: str = ROOM, secret: str = SECRET) -> str:
    return tokens.issue(grant, room, identity, secret, int(time.time()))


class Peer:
    """One signalling socket: a client of `/ws` that keeps every message it receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []

    async def send(self, kind: str, **fields: object) -> None:
        await self.ws.send_str(json.dumps({"type": kind, **fields}))

    async def expect(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                data: dict[str, Any] = json.loads(msg.data)
                self.messages.append(data)
                if data["type"] == kind:
                    return data
                assert data["type"] != "error", data


async def connect(
    session: aiohttp.ClientSession, server: TestServer, jwt: str, room: str = ROOM
) -> Peer:
    peer = Peer(await session.ws_connect(server.make_url("/ws")))
    await peer.send("join", room=room, token=jwt)
    return peer


async def test_health(server: TestServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.make_url("/health")) as response,
    ):
        assert response.status == 200
        assert (await response.json())["status"] == "ok"


@pytest.mark.timeout(60)
async def test_publisher_reaches_two_subscribers(server: TestServer) -> None:
    teacher_grant = Grant.publisher(CAMERA, MICROPHONE)
    publisher = RTCPeerConnection()
    subscribers = [Client(client_peer()) for _ in range(2)]
    async with aiohttp.ClientSession() as session:
        try:
            teacher = await connect(session, server, token(teacher_grant, "teacher"))
            assert (await teacher.expect("joined"))["participant"] == "teacher"
            publisher.addTrack(SmallVideo())
            publisher.addTrack(Tone())
            await publisher.setLocalDescription(await publisher.createOffer())
            await teacher.send("publish", sdp=publisher.localDescription.sdp)
            answer = await teacher.expect("answer")
            await publisher.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

            pupils = []
            for i, client in enumerate(subscribers):

                def on_track(track: MediaStreamTrack, client: Client = client) -> None:
                    client.tasks.append(asyncio.ensure_future(client.consume(track)))

                client.pc.on("track", on_track)
                pupil = await connect(session, server, token(Grant.viewer(), f"pupil{i}"))
                await pupil.expect("joined")
                await pupil.send("subscribe")
                offer = await pupil.expect("offer")
                await client.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
                await client.pc.setLocalDescription(await client.pc.createAnswer())
                await pupil.send("answer", sdp=client.pc.localDescription.sdp)
                pupils.append(pupil)

            # Everyone hears who is in the room; the teacher last saw both pupils arrive.
            while True:
                listing = (await teacher.expect("participants"))["participants"]
                if len(listing) == 3:
                    break
            assert {p["identity"]: p["publishing"] for p in listing} == {
                "teacher": True,
                "pupil0": False,
                "pupil1": False,
            }
            assert await wait_for(lambda: all(c.frames["video"] >= 10 for c in subscribers), 20)

            # A leave is announced to those who stay.
            await pupils[1].send("leave")
            while True:
                listing = (await pupils[0].expect("participants"))["participants"]
                if len(listing) == 2:
                    break
            assert {p["identity"] for p in listing} == {"teacher", "pupil0"}
        finally:
            await publisher.close()
            for client in subscribers:
                await client.pc.close()
                for task in client.tasks:
                    task.cancel()


async def refused_on_join(peer: Peer) -> str:
    msg = await peer.ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT
    error = json.loads(msg.data)
    assert error["type"] == "error"
    msg = await peer.ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert peer.ws.close_code == CLOSE_REFUSED
    return str(error["message"])


async def test_token_for_another_room_is_refused(server: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        jwt = token(Grant.viewer(), "pupil", room=OTHER_ROOM)
        peer = await connect(session, server, jwt, room=ROOM)
        assert "another room" in await refused_on_join(peer)


async def test_forged_token_is_refused(server: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        forged = token(Grant.publisher(CAMERA), "teacher", secret="x" * 40)
        peer = await connect(session, server, forged)
        assert "invalid token" in await refused_on_join(peer)


async def test_first_message_must_be_join(server: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        peer = Peer(await session.ws_connect(server.make_url("/ws")))
        await peer.send("subscribe")
        assert "join" in await refused_on_join(peer)


@pytest.mark.timeout(30)
async def test_subscribe_only_token_cannot_publish(server: TestServer) -> None:
    pc = RTCPeerConnection()
    async with aiohttp.ClientSession() as session:
        try:
            pupil = await connect(session, server, token(Grant.viewer(), "pupil"))
            await pupil.expect("joined")
            pc.addTrack(SmallVideo())
            await pc.setLocalDescription(await pc.createOffer())
            await pupil.send("publish", sdp=pc.localDescription.sdp)
            error = await pupil.expect("error")
            assert "does not allow publishing" in error["message"]
        finally:
            await pc.close()


@pytest.mark.timeout(30)
async def test_microphone_only_token_cannot_publish_video(server: TestServer) -> None:
    pc = RTCPeerConnection()
    async with aiohttp.ClientSession() as session:
        try:
            pupil = await connect(session, server, token(Grant.publisher(MICROPHONE), "pupil"))
            await pupil.expect("joined")
            pc.addTrack(SmallVideo())
            await pc.setLocalDescription(await pc.createOffer())
            await pupil.send("publish", sdp=pc.localDescription.sdp)
            error = await pupil.expect("error")
            assert "video" in error["message"]
        finally:
            await pc.close()
