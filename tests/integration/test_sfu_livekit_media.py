"""Media through the SFU's LiveKit signalling (sfu/livekit/media.py), with LiveKit's Python SDK
(its native client, as in Element X) publishing and decoding real VP8 and Opus.

In process, with tokens minted as the auth routes would (the homeserver's part is in
test_sfu_leave.py): a teacher publishes 720p video and a microphone, pupils speak; everyone
receives every track of the others, credited to its publisher, at the published resolution.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from livekit import rtc
from livekit.rtc.participant import PublishTrackError

from sferum_shared import SYSTEM_CLOCK
from sfu.server import SfuServer
from tests.integration.livekit_media import HEIGHT, SAMPLE_RATE, WIDTH, Publisher
from tests.integration.test_sfu_livekit import PUPIL, TEACHER, joined, until
from tests.integration.test_sfu_signalling import SECRET, offline_config, token

pytestmark = pytest.mark.integration


@pytest.fixture
async def sfu() -> AsyncIterator[tuple[SfuServer, TestServer]]:
    server = SfuServer(offline_config(SECRET), SYSTEM_CLOCK)
    test_server = TestServer(server.app())
    await test_server.start_server()
    yield server, test_server
    await test_server.close()


class Receiver:
    """What one participant receives: per publisher and kind, the frames decoded."""

    def __init__(self, room: rtc.Room) -> None:
        self.video_sizes: dict[str, set[tuple[int, int]]] = {}
        self.audio_frames: dict[str, int] = {}
        self.speakers: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        room.on("track_subscribed", self._subscribed)
        room.on(
            "active_speakers_changed",
            lambda speakers: self.speakers.update(p.identity for p in speakers),
        )

    def _subscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, who: rtc.Participant
    ) -> None:
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            self._tasks.append(asyncio.create_task(self._watch(track, who.identity)))
        else:
            self._tasks.append(asyncio.create_task(self._listen(track, who.identity)))

    async def _watch(self, track: Any, identity: str) -> None:
        async for event in rtc.VideoStream(track):
            self.video_sizes.setdefault(identity, set()).add(
                (event.frame.width, event.frame.height)
            )

    async def _listen(self, track: Any, identity: str) -> None:
        async for event in rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1):
            samples = np.frombuffer(bytes(event.frame.data), dtype=np.int16)
            if samples.size and int(np.abs(samples).max()) > 2000:  # the tone, not silence
                self.audio_frames[identity] = self.audio_frames.get(identity, 0) + 1

    def heard(self, identity: str) -> bool:
        return self.audio_frames.get(identity, 0) > 50  # half a second of the tone

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()


@pytest.mark.timeout(180)
async def test_lesson_everyone_gets_every_track_from_the_right_person(
    sfu: tuple[SfuServer, TestServer],
) -> None:
    _, server = sfu
    teacher = await joined(server, token(TEACHER, "@teacher:school.test:T"))
    pupils = [await joined(server, token(PUPIL, f"@pupil{i}:school.test:P{i}")) for i in range(3)]
    receivers = {room.local_participant.identity: Receiver(room) for room in [teacher, *pupils]}
    media = Publisher()
    try:
        camera = await media.camera(teacher)
        assert camera.sid.startswith("TR_")
        await media.microphone(teacher, 330)
        # Two pupils speak, the third listens; a pupil joining later gets all of it too.
        for pupil, hz in zip(pupils[:2], (440, 660), strict=False):
            await media.microphone(pupil, hz)
        late = await joined(server, token(PUPIL, "@late:school.test:L"))
        receivers["@late:school.test:L"] = Receiver(late)
        pupils.append(late)

        def everyone_hears_and_sees() -> bool:
            return all(
                (
                    who == "@teacher:school.test:T"
                    or (WIDTH, HEIGHT) in r.video_sizes.get("@teacher:school.test:T", set())
                )
                and all(
                    r.heard(speaker)
                    for speaker in (
                        "@teacher:school.test:T",
                        "@pupil0:school.test:P0",
                        "@pupil1:school.test:P1",
                    )
                    if speaker != who
                )
                for who, r in receivers.items()
            )

        # The encoder starts below 720p and climbs as the SFU's bitrate allowance lets it.
        await until(everyone_hears_and_sees, timeout=90)
        for who, r in receivers.items():
            # Nothing comes back to its own publisher, nothing from the silent pupil.
            assert who not in r.audio_frames and who not in r.video_sizes
            assert "@pupil2:school.test:P2" not in r.audio_frames
            assert set(r.video_sizes) <= {"@teacher:school.test:T"}
        await until(
            lambda: all(
                {"@pupil0:school.test:P0", "@pupil1:school.test:P1"} - {who} <= r.speakers
                for who, r in receivers.items()
            )
        )
    finally:
        media.stop()
        for r in receivers.values():
            r.stop()
        for room in [teacher, *pupils]:
            await room.disconnect()


@pytest.mark.timeout(60)
async def test_a_pupil_may_not_publish_a_camera_and_mutes_are_passed_on(
    sfu: tuple[SfuServer, TestServer],
) -> None:
    _, server = sfu
    teacher = await joined(server, token(TEACHER, "@teacher:school.test:T"))
    pupil = await joined(server, token(PUPIL, "@pupil:school.test:P"))
    muted: list[tuple[str, bool]] = []
    pupil.on("track_muted", lambda p, pub: muted.append((p.identity, True)))
    pupil.on("track_unmuted", lambda p, pub: muted.append((p.identity, False)))
    media = Publisher()
    try:
        # The SDK itself refuses what the permission it was sent does not list (the SFU's own
        # refusal of such an AddTrack is in test_sfu_livekit.py).
        with pytest.raises(PublishTrackError):
            await media.camera(pupil)
        microphone = await media.microphone(teacher, 330)
        there = pupil.remote_participants["@teacher:school.test:T"]
        await until(lambda: len(there.track_publications) == 1)
        microphone.mute()
        await until(lambda: ("@teacher:school.test:T", True) in muted)
        microphone.unmute()
        await until(lambda: ("@teacher:school.test:T", False) in muted)
    finally:
        media.stop()
        await pupil.disconnect()
        await teacher.disconnect()
