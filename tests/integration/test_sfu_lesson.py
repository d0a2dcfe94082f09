"""A whole lesson through the SFU: real Synapse, the real `/get_token`, aiortc clients.

Issue 5's acceptance: a teacher (video + audio) and 10 pupils (audio) of 5А, where every
pupil receives the teacher's video and the active speakers' audio. The roster is the demo
one plus 6 more pupils in 5А; accounts are issued, reconciled into `#lesson-5a`, and each
client gets its JWT from the SFU's own auth route with a real OpenID token, then joins over
the WebSocket signalling of the same in-process SFU server.
"""

from __future__ import annotations

import array
import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp.test_utils import TestServer
from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from sfu import tokens
from sfu.server import SfuServer
from tests.integration.clients import User, login
from tests.integration.harness import Deployment, copy_roster, sferumctl
from tests.integration.test_sfu_auth import openid_token, sfu_config_for
from tests.integration.test_sfu_media import Tone, client_peer, wait_for

pytestmark = pytest.mark.integration

SERVER = "school.test"
JWT_SECRET = "lesson-test-jwt-secret-of-enough-length"
SLOT = "m.call#ROOM"
TEACHER = "t-1"
DEMO_PUPILS = [f"p-5a-{i}" for i in range(1, 5)]
EXTRA_PUPILS = [f"p-5a-x{i}" for i in range(1, 7)]
PUPILS = DEMO_PUPILS + EXTRA_PUPILS
#: With the teacher they are exactly the router's 3 speaker slots; the others are silent.
LOUD_PUPILS = PUPILS[:2]
#: Decoded samples above this are the tone; Opus-coded digital silence stays near 0.
LOUD_SAMPLE = 1000


def roster_of_ten(dest: Path) -> Path:
    """The demo roster with 6 more pupils (born 2015) enrolled in 5А."""
    roster = copy_roster(dest)
    with (roster / "users.csv").open("a", encoding="utf-8") as users:
        for i, person in enumerate(EXTRA_PUPILS, 1):
            users.write(
                f"{person},,,true,school-1,student,pupil.extra{i},,Ученик{i},Дополнительный"
                ",,,,,,,05,\n"
            )
    with (roster / "demographics.csv").open("a", encoding="utf-8") as demographics:
        for person in EXTRA_PUPILS:
            demographics.write(f"{person},,,2015-05-01,male,,,,,,,,RU,,Зеленоград,\n")
    with (roster / "enrollments.csv").open("a", encoding="utf-8") as enrollments:
        for person in EXTRA_PUPILS:
            enrollments.write(
                f"e-5a-{person},,,5a,school-1,{person},student,false,2025-09-01,2026-05-31\n"
            )
    return roster


@attrs.frozen
class School:
    deployment: Deployment
    accounts: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory) -> Iterator[School]:
    tmp = tmp_path_factory.mktemp("sfu-lesson")
    deployment = Deployment(tmp / SERVER, SERVER)
    deployment.init()
    deployment.start()
    try:
        roster = roster_of_ten(tmp / "roster")
        sferumctl("roster", "import", str(deployment.dir), str(roster))
        accounts = deployment.issue(TEACHER, *PUPILS)
        assert set(accounts) == {TEACHER, *PUPILS}, accounts
        report = deployment.reconcile()
        assert report["failures"] == 0, (report, deployment.log_tail())
        yield School(deployment, accounts)
    finally:
        deployment.stop()


@pytest.fixture
async def sfu(school: School) -> AsyncIterator[TestServer]:
    config = sfu_config_for(school.deployment, SERVER, JWT_SECRET)
    server = TestServer(SfuServer(config).app())
    await server.start_server()
    yield server
    await server.close()


class TinyVideo(VideoStreamTrack):
    """160x120: ten in-process VP8 decoders stay cheap."""

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=160, height=120)
        for plane in frame.planes:
            plane.update(bytes([pts // 3000 % 256]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


def peak(frame: AudioFrame) -> int:
    samples = array.array("h", bytes(frame.planes[0]))
    return max((abs(s) for s in samples), default=0)


@attrs.define(eq=False)
class Member:
    """One lesson participant: a Matrix user, a signalling socket and two peer connections."""

    person: str
    user: User
    ws: aiohttp.ClientWebSocketResponse | None = None
    publisher: RTCPeerConnection = attrs.field(factory=client_peer)
    subscriber: RTCPeerConnection = attrs.field(factory=client_peer)
    video_frames: int = 0
    #: per received audio track (a speaker slot): decoded frames, and frames with the tone
    audio_frames: Counter[int] = attrs.field(factory=Counter)
    loud_frames: Counter[int] = attrs.field(factory=Counter)
    tasks: list[asyncio.Task[None]] = attrs.field(factory=list)
    messages: list[dict[str, Any]] = attrs.field(factory=list)

    async def send(self, kind: str, **fields: object) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps({"type": kind, **fields}))

    async def expect(self, kind: str, timeout: float = 15) -> dict[str, Any]:
        assert self.ws is not None
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                data: dict[str, Any] = json.loads(msg.data)
                if data["type"] == kind:
                    return data
                assert data["type"] != "error", data

    async def drain(self) -> None:
        """Keep reading the socket: aiohttp answers the server's heartbeat pings only then."""
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(msg.data))

    def loud_tracks(self) -> int:
        return sum(1 for n in self.loud_frames.values() if n >= 10)

    async def consume(self, track: MediaStreamTrack, index: int) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    self.video_frames += 1
                else:
                    assert isinstance(frame, AudioFrame)
                    self.audio_frames[index] += 1
                    if peak(frame) > LOUD_SAMPLE:
                        self.loud_frames[index] += 1
        except MediaStreamError:
            return

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.publisher.close()
        await self.subscriber.close()
        if self.ws is not None:
            await self.ws.close()


async def get_jwt(
    server: TestServer, session: aiohttp.ClientSession, member: Member, room_id: str
) -> str:
    body = {
        "room_id": room_id,
        "slot_id": SLOT,
        "openid_token": await openid_token(member.user),
        "member": {
            "id": uuid.uuid4().hex,
            "claimed_user_id": member.user.user_id,
            "claimed_device_id": "DEV",
        },
    }
    async with session.post(server.make_url("/get_token"), json=body) as response:
        answer = await response.json()
        assert response.status == 200, (member.person, answer)
    jwt: str = answer["jwt"]
    return jwt


async def join(
    server: TestServer, session: aiohttp.ClientSession, member: Member, room_id: str
) -> None:
    jwt = await get_jwt(server, session, member, room_id)
    member.ws = await session.ws_connect(server.make_url("/ws"))
    await member.send("join", room=tokens.room_name(room_id, SLOT), token=jwt)
    await member.expect("joined")


async def publish(member: Member, *tracks: MediaStreamTrack) -> None:
    for track in tracks:
        member.publisher.addTrack(track)
    await member.publisher.setLocalDescription(await member.publisher.createOffer())
    await member.send("publish", sdp=member.publisher.localDescription.sdp)
    answer = await member.expect("answer")
    await member.publisher.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))


async def subscribe(member: Member) -> None:
    pc = member.subscriber

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        index = next(i for i, t in enumerate(pc.getTransceivers()) if t.receiver.track is track)
        member.tasks.append(asyncio.ensure_future(member.consume(track, index)))

    await member.send("subscribe")
    offer = await member.expect("offer")
    await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    await member.send("answer", sdp=pc.localDescription.sdp)
    member.tasks.append(asyncio.ensure_future(member.drain()))


async def pupil_cannot_publish_video(member: Member) -> None:
    """A pupil's grant is microphone-only: an offer with a camera is refused, nothing else."""
    pc = RTCPeerConnection()
    try:
        pc.addTrack(TinyVideo())
        pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        await member.send("publish", sdp=pc.localDescription.sdp)
        error = await member.expect("error")
        assert "video" in error["message"], error
    finally:
        await pc.close()


@pytest.mark.timeout(150)
async def test_lesson_of_a_teacher_and_ten_pupils(school: School, sfu: TestServer) -> None:
    accounts, base = school.accounts, school.deployment.base_url
    users = await asyncio.gather(
        *(login(base, accounts[p]["user_id"], accounts[p]["password"]) for p in (TEACHER, *PUPILS))
    )
    teacher, *pupils = (Member(p, u) for p, u in zip((TEACHER, *PUPILS), users, strict=True))
    lesson = await teacher.user.resolve(f"#lesson-5a:{SERVER}")
    everyone = [teacher, *pupils]
    async with aiohttp.ClientSession() as session:
        try:
            await join(sfu, session, teacher, lesson)
            await publish(teacher, TinyVideo(), Tone())
            for pupil in pupils:
                await join(sfu, session, pupil, lesson)
                if pupil is pupils[-1]:
                    await pupil_cannot_publish_video(pupil)
                await publish(pupil, Tone() if pupil.person in LOUD_PUPILS else AudioStreamTrack())
                await subscribe(pupil)
            await subscribe(teacher)

            def hears(member: Member) -> int:
                """The active speakers a member should hear: everyone loud but themselves."""
                return len({TEACHER, *LOUD_PUPILS} - {member.person})

            def settled() -> bool:
                return all(p.video_frames >= 30 for p in pupils) and all(
                    m.loud_tracks() >= hears(m) for m in everyone
                )

            ok = await wait_for(settled, 40)
            state = {
                m.person: (m.video_frames, dict(m.audio_frames), dict(m.loud_frames))
                for m in everyone
            }
            assert ok, state
            for member in everyone:  # nobody was refused or ended on the way
                kinds = {m["type"] for m in member.messages}
                assert not kinds & {"error", "removed"}, (member.person, member.messages)
            # Every pupil decodes the teacher's video, and it keeps flowing.
            before = [p.video_frames for p in pupils]
            await asyncio.sleep(2)
            for pupil, seen in zip(pupils, before, strict=True):
                assert pupil.video_frames > seen + 20, (pupil.person, seen, pupil.video_frames)
            # Everyone hears the active speakers, each on a track of its own: the teacher
            # and both loud pupils (less themselves); the silent microphones take no slot.
            for member in everyone:
                assert len(member.audio_frames) <= 3, (member.person, state)
                assert member.loud_tracks() == hears(member), (member.person, state)
            # The teacher saw no video (only the teacher publishes video).
            assert teacher.video_frames == 0
        finally:
            for member in everyone:
                await member.close()
