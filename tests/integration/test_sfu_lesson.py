"""Lessons and broadcasts through the SFU: real Synapse, the real `/get_token`, aiortc clients.

Issue 5's acceptance:

* a lesson: a teacher (video + audio) and 10 pupils (audio) of 5А, where every pupil receives
  the teacher's video and the active speakers' audio;
* a broadcast: the school's head publishes, 40 viewers (the 10 pupils on 4 devices each)
  watch, spread by the origin's `/get_token` over two SFU processes, the origin and an edge
  that subscribes to the origin like any client (`sfu.edge`).

The roster is the demo one plus 6 more pupils in 5А; accounts are issued, reconciled into the
rooms, and each client gets its JWT from the SFU's own auth route with a real OpenID token.
"""

from __future__ import annotations

import array
import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import jwt as pyjwt
import pytest
from aiohttp.test_utils import TestServer
from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame
from livekit import rtc as livekit

from sferum_shared import SYSTEM_CLOCK
from sfu import tokens
from sfu.server import SfuServer
from synapse_sferum.ctl.demo import DemoCalendar
from tests.demo import today
from tests.integration.clients import User, login
from tests.integration.harness import Deployment, copy_roster, free_ports, sferumctl
from tests.integration.livekit_media import HEIGHT, WIDTH, Audience
from tests.integration.livekit_media import Publisher as LiveKitMedia
from tests.integration.test_sfu_auth import openid_token, sfu_config_for
from tests.integration.test_sfu_media import Tone, client_peer, wait_for

pytestmark = pytest.mark.integration

SERVER = "school.test"
JWT_SECRET = "lesson-test-jwt-secret-of-enough-length"
SLOT = "m.call#ROOM"
TEACHER = "t-1"
HEAD = "staff-1"  # the school's administrator: staff publish broadcasts
DEMO_PUPILS = [f"p-5a-{i}" for i in range(1, 5)]
EXTRA_PUPILS = [f"p-5a-x{i}" for i in range(1, 7)]
PUPILS = DEMO_PUPILS + EXTRA_PUPILS
#: 8 of 5А's 11 guardians, for a parents' meeting; and a guardian of 6Б.
GUARDIANS = [
    "g-volkova",
    "g-volkov",
    "g-morozova",
    "g-lebedeva",
    "g-5a-x1",
    "g-5a-x2",
    "g-5a-x3",
    "g-5a-x4",
]
OTHER_GUARDIAN = "g-kozlova"
#: With the teacher they are exactly the router's 3 speaker slots; the others are silent.
LOUD_PUPILS = PUPILS[:2]
#: Decoded samples above this are the tone; Opus-coded digital silence stays near 0.
LOUD_SAMPLE = 1000


def roster_of_ten(dest: Path) -> Path:
    """The demo roster with 6 more pupils (11 years old) enrolled in 5А, each with a parent."""
    roster = copy_roster(dest)
    with (roster / "users.csv").open("a", encoding="utf-8") as users:
        for i, person in enumerate(EXTRA_PUPILS, 1):
            users.write(
                f"{person},,,true,school-1,student,pupil.extra{i},,Ученик{i},Дополнительный"
                f",,,,,,g-5a-x{i},05,\n"
                f"g-5a-x{i},,,true,school-1,parent,parent.extra{i},,Родитель{i},Дополнительный"
                f",,,,,+7916555000{i},{person},,\n"
            )
    born = DemoCalendar(today()).born(11, 5, 1)
    with (roster / "demographics.csv").open("a", encoding="utf-8") as demographics:
        for person in EXTRA_PUPILS:
            demographics.write(f"{person},,,{born},male,,,,,,,,RU,,Зеленоград,\n")
    with (roster / "enrollments.csv").open("a", encoding="utf-8") as enrollments:
        for person in EXTRA_PUPILS:
            enrollments.write(f"e-5a-{person},,,5a,school-1,{person},student,false,2025-09-01,\n")
    return roster


@attrs.frozen
class School:
    deployment: Deployment
    accounts: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory) -> Iterator[School]:
    tmp = tmp_path_factory.mktemp("sfu-lesson")
    # The SFU and two edges run as `sferumctl start` runs them (the broadcast test); the lesson
    # tests use an SFU of their own in this process.
    sfu_options = ("--sfu-port", str(free_ports(3)), "--sfu-edges", "2")  # edges take the next two
    deployment = Deployment(tmp / SERVER, SERVER, extra_init=sfu_options)
    deployment.init()
    deployment.start()
    try:
        roster = roster_of_ten(tmp / "roster")
        sferumctl("roster", "import", str(deployment.dir), str(roster))
        people = {HEAD, TEACHER, *PUPILS, *GUARDIANS, OTHER_GUARDIAN}
        accounts = deployment.issue(*people)
        assert set(accounts) == people, accounts
        report = deployment.reconcile()
        assert report["failures"] == 0, (report, deployment.log_tail())
        yield School(deployment, accounts)
    finally:
        deployment.stop()


@pytest.fixture
async def sfu(school: School) -> AsyncIterator[TestServer]:
    config = sfu_config_for(school.deployment, SERVER, JWT_SECRET)
    server = TestServer(SfuServer(config, SYSTEM_CLOCK).app())
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
    identity: str = ""  # the SFU's name for this membership, from `joined`
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
        """Keep reading the socket (aiohttp answers heartbeats only then); answer new offers."""
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                self.messages.append(data)
                if data["type"] == "offer":  # renegotiation: a new publisher's track
                    await self.answer(data["sdp"])

    async def answer(self, sdp: str) -> None:
        await self.subscriber.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await self.subscriber.setLocalDescription(await self.subscriber.createAnswer())
        await self.send("answer", sdp=self.subscriber.localDescription.sdp)

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


async def token_at(
    session: aiohttp.ClientSession, sfu_url: str, member: Member, room_id: str
) -> tuple[str, str]:
    """(url, jwt) from the SFU's `/get_token` at `sfu_url`, for a new membership of `member`."""
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
    # As the call page asks: a viewer may be sent to an edge.
    async with session.post(f"{sfu_url}/get_token", json=body) as response:
        answer = await response.json()
        assert response.status == 200, (member.person, answer)
    return str(answer["url"]), str(answer["jwt"])


async def connect(session: aiohttp.ClientSession, member: Member, url: str, jwt: str) -> None:
    """Join at `url` as a client does: the room is the token's own (it is not secret)."""
    room = pyjwt.decode(jwt, options={"verify_signature": False})["video"]["room"]
    member.ws = await session.ws_connect(f"{url}/ws")
    await member.send("join", room=room, token=jwt)
    await member.expect("joined")


async def get_jwt(
    server: TestServer, session: aiohttp.ClientSession, member: Member, room_id: str
) -> str:
    """A JWT from the in-process SFU's `/get_token`."""
    _, jwt = await token_at(session, str(server.make_url("")).rstrip("/"), member, room_id)
    return jwt


async def join(
    server: TestServer, session: aiohttp.ClientSession, member: Member, room_id: str
) -> None:
    jwt = await get_jwt(server, session, member, room_id)
    member.ws = await session.ws_connect(server.make_url("/ws"))
    await member.send("join", room=tokens.room_name(room_id, SLOT), token=jwt)
    member.identity = (await member.expect("joined"))["participant"]


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
    await member.answer(offer["sdp"])
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
                assert pupil.video_frames > seen + 5, (pupil.person, seen, pupil.video_frames)
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


def last(member: Member, kind: str) -> dict[str, Any] | None:
    """The newest message of `kind` the member's socket got (read by `Member.drain`)."""
    return next((m for m in reversed(member.messages) if m["type"] == kind), None)


def listed(member: Member, identity: str) -> dict[str, Any]:
    """`identity` in the newest participants list `member` got."""
    latest = last(member, "participants")
    assert latest is not None, member.messages
    return next(p for p in latest["participants"] if p["identity"] == identity)


@pytest.mark.timeout(150)
async def test_the_teacher_moderates_the_lesson(school: School, sfu: TestServer) -> None:
    """Mute, a camera on permission, removal for the rest of the call; hands and speakers."""
    persons = (TEACHER, *PUPILS[:4])
    accounts, base = school.accounts, school.deployment.base_url
    users = await asyncio.gather(
        *(login(base, accounts[p]["user_id"], accounts[p]["password"]) for p in persons)
    )
    members = [Member(p, u) for p, u in zip(persons, users, strict=True)]
    teacher, loud, other_loud, quiet, unruly = members
    lesson = await teacher.user.resolve(f"#lesson-5a:{SERVER}")
    async with aiohttp.ClientSession() as session:
        try:
            for member in members:
                await join(sfu, session, member, lesson)
            await publish(teacher, TinyVideo(), Tone())
            for pupil in (loud, other_loud):
                await publish(pupil, Tone())
            for pupil in (quiet, unruly):
                await publish(pupil, AudioStreamTrack())
            for member in members:
                await subscribe(member)
            assert await wait_for(lambda: quiet.loud_tracks() == 3, 30), dict(quiet.loud_frames)

            def speakers() -> set[str]:
                return set((last(quiet, "speakers") or {}).get("speakers", []))

            # Who speaks goes out as `speakers`.
            voices = {teacher.identity, loud.identity, other_loud.identity}
            assert await wait_for(lambda: speakers() == voices, 10), quiet.messages[-5:]

            # A pupil may not moderate; the teacher mutes a loud pupil, whose voice is no
            # longer forwarded to anyone (and whose slot frees up).
            await unruly.send("moderate", participant=loud.identity, action="mute")
            assert await wait_for(lambda: last(unruly, "error") is not None, 5)
            await teacher.send("moderate", participant=loud.identity, action="mute")
            assert await wait_for(lambda: last(loud, "moderated") is not None, 5)
            assert await wait_for(lambda: speakers() == voices - {loud.identity}, 10)
            await asyncio.sleep(0.5)
            quiet.loud_frames.clear()
            await asyncio.sleep(2)
            assert quiet.loud_tracks() == 2, dict(quiet.loud_frames)
            assert listed(teacher, loud.identity)["muted"] == ["audio"]

            # A raised hand shows in everyone's participants list.
            await quiet.send("hand", raised=True)
            assert await wait_for(lambda: listed(teacher, quiet.identity)["hand_raised"], 5)

            # The quiet pupil may not send video until the teacher allows the camera; then a
            # second offer on the same connection adds it, and the teacher gets it by a
            # renegotiated offer.
            camera = TinyVideo()
            quiet.publisher.addTrack(camera)
            await quiet.publisher.setLocalDescription(await quiet.publisher.createOffer())
            await quiet.send("publish", sdp=quiet.publisher.localDescription.sdp)
            assert await wait_for(
                lambda: "video" in (last(quiet, "error") or {}).get("message", ""), 5
            )
            await teacher.send("moderate", participant=quiet.identity, action="allow_camera")
            assert await wait_for(lambda: last(quiet, "moderated") is not None, 5)
            quiet.messages.clear()
            await quiet.send("publish", sdp=quiet.publisher.localDescription.sdp)
            assert await wait_for(lambda: last(quiet, "answer") is not None, 10), quiet.messages
            answer = last(quiet, "answer")
            assert answer is not None
            await quiet.publisher.setRemoteDescription(
                RTCSessionDescription(answer["sdp"], "answer")
            )
            assert await wait_for(lambda: teacher.video_frames >= 20, 20), teacher.video_frames

            # Removed: the session ends with the reason, and the same user cannot come back.
            await teacher.send("moderate", participant=unruly.identity, action="remove")
            assert await wait_for(lambda: last(unruly, "removed") is not None, 5)
            removed = last(unruly, "removed")
            assert removed is not None and removed["reason"] == "ru.sferum.sfu_removed"
            again = Member(unruly.person, unruly.user)
            try:
                jwt = await get_jwt(sfu, session, again, lesson)
                again.ws = await session.ws_connect(sfu.make_url("/ws"))
                await again.send("join", room=tokens.room_name(lesson, SLOT), token=jwt)
                refused = await again.ws.receive_json(timeout=5)
                assert refused["type"] == "removed", refused
            finally:
                await again.close()
        finally:
            for member in members:
                await member.close()


# -- a broadcast over two SFU processes ----------------------------------------------------------

VIEWER_DEVICES = 4  # 10 pupils on 4 devices each: 40 viewers


@pytest.mark.alone  # 40 viewers decoding in this process, 5 frames each in 2 s
@pytest.mark.timeout(180)
async def test_broadcast_to_forty_viewers_over_two_sfu_processes(
    school: School,
) -> None:
    sfu = school.deployment.sfu_config()  # the SFU and edges that `sferumctl start` runs
    origin, edges = sfu.sfu_url, sfu.edge_urls
    accounts, base = school.accounts, school.deployment.base_url
    users = await asyncio.gather(
        *(login(base, accounts[p]["user_id"], accounts[p]["password"]) for p in (HEAD, *PUPILS))
    )
    head_user, *pupil_users = users
    broadcast = await head_user.resolve(f"#broadcast-school-1:{SERVER}")
    head = Member(HEAD, head_user)
    viewers = [
        Member(f"{person}#{device}", user)
        for person, user in zip(PUPILS, pupil_users, strict=True)
        for device in range(VIEWER_DEVICES)
    ]
    async with aiohttp.ClientSession() as session:
        try:
            url, jwt = await token_at(session, origin, head, broadcast)
            assert url == origin  # publishers always go to the origin
            await connect(session, head, url, jwt)
            await publish(head, TinyVideo(), Tone())
            where = Counter[str]()

            async def watch(viewer: Member) -> None:
                url, jwt = await token_at(session, origin, viewer, broadcast)
                where[url] += 1
                await connect(session, viewer, url, jwt)
                await subscribe(viewer)

            # The class arrives at once, as it does when the broadcast starts.
            await asyncio.gather(*(watch(viewer) for viewer in viewers))
            # Viewers were spread over the edges, which get the broadcast through their own
            # subscriptions at the origin.
            assert set(where) == set(edges) and len(edges) == 2, where
            ok = await wait_for(lambda: all(v.video_frames >= 30 for v in viewers), 90)
            state = {v.person: (v.video_frames, dict(v.loud_frames)) for v in viewers}
            assert ok, (where, state, school.deployment.log_tail())
            before = [v.video_frames for v in viewers]
            await asyncio.sleep(2)
            for viewer, seen in zip(viewers, before, strict=True):
                assert viewer.video_frames > seen + 5, (viewer.person, seen, viewer.video_frames)
                assert viewer.loud_tracks() == 1, (viewer.person, state)  # the head's voice
            assert all(not {m["type"] for m in v.messages} & {"error", "removed"} for v in viewers)
        finally:
            for member in (head, *viewers):
                await member.close()


async def livekit_token(
    auth: str, session: aiohttp.ClientSession, user: User, room: str
) -> tuple[str, str]:
    """(url, JWT) as Element Call asks for them by default ("compatibility": the legacy
    `/sfu/get` of the auth service at ``auth``)."""
    body = {"room": room, "openid_token": await openid_token(user), "device_id": "PHONE"}
    async with session.post(f"{auth}/sfu/get", json=body) as response:
        answer = await response.json()
        assert response.status == 200, answer
    return str(answer["url"]), str(answer["jwt"])


def websocket_url(url: str) -> str:
    """The SFU's URL as LiveKit's native client takes it (the JS one maps http(s) itself)."""
    return url.replace("https://", "wss://").replace("http://", "ws://")


def in_process_sfu(sfu: TestServer) -> tuple[str, str]:
    """The auth base and the LiveKit URL of an SFU run inside the test (its config names
    another address as `sfu_url`)."""
    return str(sfu.make_url("")).rstrip("/"), f"ws://{sfu.host}:{sfu.port}"


async def livekit_call(
    sfu: tuple[str, str | None],
    session: aiohttp.ClientSession,
    users: dict[str, User],
    room_id: str,
    settled: Callable[[dict[str, tuple[dict[str, set[tuple[int, int]]], set[str]]]], bool],
    publish: Callable[[dict[str, livekit.Room], LiveKitMedia], Awaitable[None]],
) -> tuple[dict[str, Audience], dict[str, str]]:
    """Everyone joins the call of ``room_id`` on LiveKit's native client with a token from
    `/sfu/get`, ``publish`` starts the media, and the call runs until ``settled`` holds for
    what everyone receives (person -> (video sizes by publisher, publishers heard)).

    ``sfu``: the auth service's base URL, and where to connect (None: where `/sfu/get` said,
    an edge for a broadcast's viewer). Returns the audiences, and where each person was."""
    auth, here = sfu
    rooms: dict[str, livekit.Room] = {}
    audiences: dict[str, Audience] = {}
    where: dict[str, str] = {}
    media = LiveKitMedia()
    try:
        for person, user in users.items():
            room = rooms[person] = livekit.Room()
            audiences[person] = Audience(room)
            url, jwt = await livekit_token(auth, session, user, room_id)
            where[person] = url
            await room.connect(here or websocket_url(url), jwt)
            assert room.local_participant.identity == f"{user.user_id}:PHONE"
        await publish(rooms, media)
        async with asyncio.timeout(120):
            while True:
                seen = {person: await a.seen() for person, a in audiences.items()}
                if settled(seen):
                    for person, room in rooms.items():
                        audiences[person].others = set(room.remote_participants)
                    return audiences, where
                await asyncio.sleep(1)
    finally:
        await media.stop()
        for audience in audiences.values():
            await audience.close()
        for room in rooms.values():
            await room.disconnect()


@pytest.mark.timeout(240)
async def test_lesson_of_a_teacher_and_ten_pupils_on_livekit_clients(
    school: School, sfu: TestServer
) -> None:
    """Issue 12's lesson: every pupil on LiveKit's native client (as in Element X) gets the
    teacher's 720p video and hears each speaking pupil on that pupil's own track."""
    accounts, base = school.accounts, school.deployment.base_url
    people = (TEACHER, *PUPILS)
    logged_in = await asyncio.gather(
        *(login(base, accounts[p]["user_id"], accounts[p]["password"]) for p in people)
    )
    users = dict(zip(people, logged_in, strict=True))
    identity = {p: f"{u.user_id}:PHONE" for p, u in users.items()}
    speaking = {identity[p] for p in (TEACHER, *LOUD_PUPILS)}

    async def publish(rooms: dict[str, livekit.Room], media: LiveKitMedia) -> None:
        await media.camera(rooms[TEACHER])
        await media.microphone(rooms[TEACHER], 330)
        for person in LOUD_PUPILS:
            await media.microphone(rooms[person], 440)
        # A pupil's grant has no camera: the SFU tells the app so (that the SFU refuses the
        # camera, which LiveKit's Rust SDK learns only after its 10 s, is in
        # test_sfu_livekit_media.py and test_sfu_livekit.py).
        permissions = rooms[PUPILS[-1]].local_participant.permissions
        assert list(permissions.can_publish_sources) == [livekit.TrackSource.SOURCE_MICROPHONE]

    def settled(seen: dict[str, tuple[dict[str, set[tuple[int, int]]], set[str]]]) -> bool:
        return all(
            (person == TEACHER or (WIDTH, HEIGHT) in sizes.get(identity[TEACHER], set()))
            and heard == speaking - {identity[person]}
            for person, (sizes, heard) in seen.items()
        )

    async with aiohttp.ClientSession() as session:
        lesson = await users[TEACHER].resolve(f"#lesson-5a:{SERVER}")
        audiences, _ = await livekit_call(
            in_process_sfu(sfu), session, users, lesson, settled, publish
        )
    for person, audience in audiences.items():
        # Nothing of one's own; video only from the teacher.
        assert identity[person] not in audience.tracks
        assert audience.video_from() == ({identity[TEACHER]} if person != TEACHER else set())


async def logins(school: School, *people: str) -> dict[str, User]:
    accounts, base = school.accounts, school.deployment.base_url
    users = await asyncio.gather(
        *(login(base, accounts[p]["user_id"], accounts[p]["password"]) for p in people)
    )
    return dict(zip(people, users, strict=True))


@pytest.mark.timeout(240)
async def test_parents_meeting_of_the_class_teacher_and_eight_guardians(
    school: School, sfu: TestServer
) -> None:
    """The seeds' central case on phones: 5А's meeting room, the class teacher on camera, two
    parents speaking and one on camera; a parent of 6Б gets no token."""
    users = await logins(school, TEACHER, *GUARDIANS)
    identity = {p: f"{u.user_id}:PHONE" for p, u in users.items()}
    on_camera = {identity[TEACHER], identity[GUARDIANS[0]]}
    speaking = {identity[TEACHER], identity[GUARDIANS[1]], identity[GUARDIANS[2]]}

    async def publish(rooms: dict[str, livekit.Room], media: LiveKitMedia) -> None:
        # Two cameras to eight phones in one process: 640×360, so that the sixteen decoders
        # stay light (the resolution itself is checked in the lesson and the direct call).
        await media.camera(rooms[TEACHER], 640, 360)
        await media.microphone(rooms[TEACHER], 330)
        await media.camera(rooms[GUARDIANS[0]], 640, 360)
        for person in GUARDIANS[1:3]:
            await media.microphone(rooms[person], 440)

    def settled(seen: dict[str, tuple[dict[str, set[tuple[int, int]]], set[str]]]) -> bool:
        return all(
            set(sizes) == on_camera - {identity[person]} and heard == speaking - {identity[person]}
            for person, (sizes, heard) in seen.items()
        )

    async with aiohttp.ClientSession() as session:
        meeting = await users[TEACHER].resolve(f"#meeting-5a:{SERVER}")
        other = (await logins(school, OTHER_GUARDIAN))[OTHER_GUARDIAN]
        body = {"room": meeting, "openid_token": await openid_token(other), "device_id": "PHONE"}
        async with session.post(sfu.make_url("/sfu/get"), json=body) as response:
            assert response.status == 403, await response.text()
            assert (await response.json())["ru.sferum.reason"] == "ru.sferum.sfu_not_joined"
        await livekit_call(in_process_sfu(sfu), session, users, meeting, settled, publish)


@pytest.mark.timeout(180)
async def test_a_parent_video_calls_the_class_teacher_in_their_direct_chat(
    school: School, sfu: TestServer
) -> None:
    users = await logins(school, TEACHER, GUARDIANS[3])
    teacher, parent = users[TEACHER], users[GUARDIANS[3]]
    created = await parent.create_room(is_direct=True, invite=[teacher.user_id])
    assert created.status == 200, created
    dm = created.body["room_id"]
    joined = await teacher.call("POST", f"/rooms/{dm}/join", {})
    assert joined.status == 200, joined
    identity = {p: f"{u.user_id}:PHONE" for p, u in users.items()}

    async def publish(rooms: dict[str, livekit.Room], media: LiveKitMedia) -> None:
        for room in rooms.values():
            await media.camera(room)
            await media.microphone(room, 330)

    def settled(seen: dict[str, tuple[dict[str, set[tuple[int, int]]], set[str]]]) -> bool:
        # Each sees and hears the other, at the published resolution.
        return all(
            (WIDTH, HEIGHT) in sizes.get(identity[other], set()) and heard == {identity[other]}
            for person, (sizes, heard) in seen.items()
            for other in users
            if other != person
        )

    async with aiohttp.ClientSession() as session:
        await livekit_call(in_process_sfu(sfu), session, users, dm, settled, publish)


@pytest.mark.timeout(240)
async def test_broadcast_on_livekit_clients_over_the_edges(school: School) -> None:
    """The broadcast as the apps watch it: the head publishes at the origin through LiveKit's
    protocol; pupils' phones are sent to the edges by `/sfu/get` and get the head's video at
    its published resolution and voice from there. Viewers are hidden: the head sees none of
    them, and each sees only the head."""
    sfu = school.deployment.sfu_config()  # the SFU and edges that `sferumctl start` runs
    viewers = PUPILS[:4]
    users = await logins(school, HEAD, *viewers)
    identity = {p: f"{u.user_id}:PHONE" for p, u in users.items()}

    async def publish(rooms: dict[str, livekit.Room], media: LiveKitMedia) -> None:
        await media.camera(rooms[HEAD])
        await media.microphone(rooms[HEAD], 330)

    def settled(seen: dict[str, tuple[dict[str, set[tuple[int, int]]], set[str]]]) -> bool:
        return all(
            (WIDTH, HEIGHT) in seen[person][0].get(identity[HEAD], set())
            and seen[person][1] == {identity[HEAD]}
            for person in viewers
        )

    async with aiohttp.ClientSession() as session:
        broadcast = await users[HEAD].resolve(f"#broadcast-school-1:{SERVER}")
        auth = sfu.sfu_url.rstrip("/")
        audiences, where = await livekit_call(
            (auth, None), session, users, broadcast, settled, publish
        )
    assert where[HEAD] == sfu.sfu_url  # publishers always go to the origin
    assert {where[p] for p in viewers} == set(sfu.edge_urls) and len(sfu.edge_urls) == 2, where
    assert audiences[HEAD].others == set()
    for person in viewers:
        assert audiences[person].others == {identity[HEAD]}, person
