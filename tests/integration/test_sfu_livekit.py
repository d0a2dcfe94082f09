"""The SFU's LiveKit signalling (sfu/livekit) against LiveKit's own Python SDK, whose wheel
carries LiveKit's native (Rust) client: a client we did not write, doing what Element X does.

In process, with no homeserver: tokens are minted with `sfu.tokens.issue` as the auth routes
would. The ban path with a real Synapse is in test_sfu_leave.py; media over LiveKit in
test_sfu_livekit_media.py and test_sfu_lesson.py; this checks the room life around it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import attrs
import pytest
from aiohttp.test_utils import TestServer
from livekit import rtc
from livekit.protocol import models
from livekit.protocol import rtc as signal

from sferum_shared import SYSTEM_CLOCK
from sfu import tokens
from sfu.grants import CAMERA, MICROPHONE, SCREEN_SHARE, Grant
from sfu.server import SfuServer
from tests.integration.test_sfu_signalling import OTHER_ROOM, ROOM, SECRET, offline_config, token

pytestmark = pytest.mark.integration

TEACHER = Grant.publisher(CAMERA, MICROPHONE, SCREEN_SHARE, room_admin=True)
PUPIL = Grant.publisher(MICROPHONE)
HIDDEN_VIEWER = Grant(can_publish=False, hidden=True)


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    test_server = TestServer(SfuServer(offline_config(SECRET), SYSTEM_CLOCK).app())
    await test_server.start_server()
    yield test_server
    await test_server.close()


def url(server: TestServer) -> str:
    return f"ws://{server.host}:{server.port}"


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def joined(server: TestServer, jwt_token: str) -> rtc.Room:
    room = rtc.Room()
    await room.connect(url(server), jwt_token)
    return room


@pytest.mark.timeout(60)
async def test_participants_see_each_other_come_and_go(server: TestServer) -> None:
    teacher = await joined(server, token(TEACHER, "@teacher:school.test:T"))
    seen: list[tuple[str, str]] = []
    teacher.on("participant_connected", lambda p: seen.append(("in", p.identity)))
    teacher.on("participant_disconnected", lambda p: seen.append(("out", p.identity)))
    pupil = await joined(server, token(PUPIL, "@pupil:school.test:P"))
    try:
        # The newcomer learns who is there from the JoinResponse, with LiveKit-shaped IDs.
        assert pupil.local_participant.identity == "@pupil:school.test:P"
        assert pupil.local_participant.sid.startswith("PA_")
        room_sid = await pupil.sid
        assert room_sid.startswith("RM_") and room_sid == await teacher.sid
        assert pupil.name == ROOM
        [there] = pupil.remote_participants.values()
        assert there.identity == "@teacher:school.test:T"
        assert there.sid == teacher.local_participant.sid
        # The school's grant is what the SDK lets each of them publish.
        mine = pupil.local_participant.permissions
        assert mine.can_publish and not mine.hidden
        assert list(mine.can_publish_sources) == [rtc.TrackSource.SOURCE_MICROPHONE]
        assert list(there.permissions.can_publish_sources) == [
            rtc.TrackSource.SOURCE_CAMERA,
            rtc.TrackSource.SOURCE_MICROPHONE,
            rtc.TrackSource.SOURCE_SCREENSHARE,
        ]
        await until(lambda: ("in", "@pupil:school.test:P") in seen)
        await pupil.disconnect()
        await until(lambda: ("out", "@pupil:school.test:P") in seen)
        assert list(teacher.remote_participants) == []
    finally:
        await teacher.disconnect()
        await pupil.disconnect()


@pytest.mark.timeout(60)
async def test_hidden_viewers_are_not_announced(server: TestServer) -> None:
    teacher = await joined(server, token(TEACHER, "@teacher:school.test:T"))
    viewer = await joined(server, token(HIDDEN_VIEWER, "@family:school.test:F"))
    try:
        assert [p.identity for p in viewer.remote_participants.values()] == [
            "@teacher:school.test:T"
        ]
        assert viewer.local_participant.permissions.hidden
        assert not viewer.local_participant.permissions.can_publish
        pupil = await joined(server, token(PUPIL, "@pupil:school.test:P"))
        await until(lambda: len(teacher.remote_participants) == 1)
        # The pupil arrived after the viewer and still does not see them.
        assert [p.identity for p in pupil.remote_participants.values()] == [
            "@teacher:school.test:T"
        ]
        assert [p.identity for p in teacher.remote_participants.values()] == [
            "@pupil:school.test:P"
        ]
        await pupil.disconnect()
    finally:
        await viewer.disconnect()
        await teacher.disconnect()


def expired_token() -> str:
    now = int(time.time())
    return tokens.issue(PUPIL, ROOM, "@late:school.test:L", SECRET, now - 120, 60)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "bad_token",
    [
        pytest.param(lambda: token(PUPIL, "@p:school.test:P", secret="f" * 40), id="forged"),
        pytest.param(expired_token, id="expired"),
        pytest.param(lambda: "not-a-jwt", id="garbage"),
    ],
)
async def test_bad_tokens_are_refused_at_the_upgrade(
    server: TestServer, bad_token: Callable[[], str]
) -> None:
    teacher = await joined(server, token(TEACHER, "@teacher:school.test:T"))
    try:
        with pytest.raises(rtc.ConnectError):
            await rtc.Room().connect(url(server), bad_token())
        async with aiohttp.ClientSession() as session:
            query = {"access_token": bad_token()}
            async with session.get(server.make_url("/rtc"), params=query) as response:
                assert response.status == 401  # no upgrade at all
            async with session.get(server.make_url("/rtc/validate"), params=query) as response:
                assert response.status == 401
                assert response.headers["Access-Control-Allow-Origin"] == "*"
                assert await response.text()  # the reason, for the client's error
        assert list(teacher.remote_participants) == []
    finally:
        await teacher.disconnect()


async def test_validation_and_version_one(server: TestServer) -> None:
    good = token(PUPIL, "@pupil:school.test:P", room=OTHER_ROOM)
    async with aiohttp.ClientSession() as session:
        bearer = {"Authorization": f"Bearer {good}"}
        async with session.get(server.make_url("/rtc/validate"), headers=bearer) as response:
            assert response.status == 200
        async with session.get(server.make_url("/rtc/validate")) as response:
            assert (response.status, await response.text()) == (401, "no access token")
        for path in ("/rtc/v1", "/rtc/v1/validate"):
            async with session.get(server.make_url(path), params={"access_token": good}) as r:
                # 404, cross-origin readable: the JS SDK then falls back to version 0.
                assert r.status == 404 and r.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.timeout(60)
async def test_garbage_frame_ends_only_that_connection(server: TestServer) -> None:
    teacher = await joined(server, token(TEACHER, "@teacher:school.test:T"))
    left: list[str] = []
    teacher.on("participant_disconnected", lambda p: left.append(p.identity))
    try:
        async with aiohttp.ClientSession() as session:
            query = {"access_token": token(PUPIL, "@pupil:school.test:P")}
            async with session.ws_connect(server.make_url("/rtc"), params=query) as ws:
                first = signal.SignalResponse()
                first.ParseFromString(await ws.receive_bytes(timeout=10))
                assert first.join.participant.identity == "@pupil:school.test:P"
                await until(lambda: len(teacher.remote_participants) == 1)
                ping = signal.SignalRequest(ping_req=signal.Ping(timestamp=42))
                await ws.send_bytes(ping.SerializeToString())
                pong = signal.SignalResponse()
                pong.ParseFromString(await ws.receive_bytes(timeout=10))
                assert pong.pong_resp.last_ping_timestamp == 42
                await ws.send_bytes(b"\xff\xff not protobuf")
                closing = await ws.receive(timeout=10)
                assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await until(lambda: left == ["@pupil:school.test:P"])
        assert teacher.connection_state == rtc.ConnectionState.CONN_CONNECTED
    finally:
        await teacher.disconnect()


@pytest.mark.timeout(60)
async def test_a_fresh_token_comes_before_the_first_runs_out(
    server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sfu.livekit.server.REFRESH_TOKEN_SECONDS", 0.2)
    session_claim = {
        "ru.sferum.session": {"room_id": "!r:hs", "user_id": "@p:hs", "device_id": "D"}
    }
    first = tokens.issue(
        PUPIL, ROOM, "@p:hs:D", SECRET, int(time.time()) - 10, 60, private_claims=session_claim
    )
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            server.make_url("/rtc"), headers={"Authorization": f"Bearer {first}"}
        ) as ws,
    ):
        while True:
            frame = signal.SignalResponse()
            frame.ParseFromString(await ws.receive_bytes(timeout=10))
            if frame.WhichOneof("message") == "refresh_token":
                break
    claims = tokens.verify(frame.refresh_token, SECRET, ROOM, int(time.time()))
    assert claims["sub"] == "@p:hs:D" and tokens.grant_of(claims) == PUPIL
    assert claims["ru.sferum.session"] == session_claim["ru.sferum.session"]
    assert claims["nbf"] > tokens.verify(first, SECRET, ROOM, int(time.time()))["nbf"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("source", "kind", "allowed"),
    [
        (models.TrackSource.MICROPHONE, models.TrackType.AUDIO, True),
        (models.TrackSource.CAMERA, models.TrackType.VIDEO, False),
        (models.TrackSource.SCREEN_SHARE, models.TrackType.VIDEO, False),
        # Video announced as the microphone: the grant names sources, and kinds follow them.
        (models.TrackSource.MICROPHONE, models.TrackType.VIDEO, False),
    ],
)
async def test_the_sfu_itself_refuses_an_ungranted_track(
    server: TestServer, source: int, kind: int, allowed: bool
) -> None:
    """A client that ignores its permission (not an SDK: a hand-made one) gets no track ID."""
    async with aiohttp.ClientSession() as session:
        query = {"access_token": token(PUPIL, "@pupil:school.test:P")}
        async with session.ws_connect(server.make_url("/rtc"), params=query) as ws:
            join = signal.SignalResponse()
            join.ParseFromString(await ws.receive_bytes(timeout=10))
            add = signal.AddTrackRequest(cid="my-track", type=kind, source=source, name="x")
            await ws.send_bytes(signal.SignalRequest(add_track=add).SerializeToString())
            reply = signal.SignalResponse()
            reply.ParseFromString(await ws.receive_bytes(timeout=10))
            if allowed:
                assert reply.track_published.cid == "my-track"
                assert reply.track_published.track.sid.startswith("TR_")
            else:
                refusal = reply.request_response
                assert refusal.reason == signal.RequestResponse.NOT_ALLOWED
                assert refusal.add_track.cid == "my-track" and refusal.message


@pytest.mark.timeout(60)
async def test_an_edge_takes_no_publishers_even_while_its_origin_is_down() -> None:
    """Publishing happens at the origin only: an edge refuses every AddTrack, whatever the
    grant; a viewer still joins it while the origin is unreachable (its link retries)."""
    config = attrs.evolve(offline_config(SECRET), origin_url="ws://127.0.0.1:9/ws")
    edge = TestServer(SfuServer(config, SYSTEM_CLOCK).app())
    await edge.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            query = {"access_token": token(TEACHER, "@teacher:school.test:T")}
            async with session.ws_connect(edge.make_url("/rtc"), params=query) as ws:
                join = signal.SignalResponse()
                join.ParseFromString(await ws.receive_bytes(timeout=10))
                assert join.WhichOneof("message") == "join"
                assert list(join.join.other_participants) == []
                add = signal.AddTrackRequest(
                    cid="cam", type=models.TrackType.VIDEO, source=models.TrackSource.CAMERA
                )
                await ws.send_bytes(signal.SignalRequest(add_track=add).SerializeToString())
                reply = signal.SignalResponse()
                reply.ParseFromString(await ws.receive_bytes(timeout=10))
                refusal = reply.request_response
                assert refusal.reason == signal.RequestResponse.NOT_ALLOWED
                assert "edge" in refusal.message
    finally:
        await edge.close()
