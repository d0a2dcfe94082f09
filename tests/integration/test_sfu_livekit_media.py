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

import pytest
from aiohttp.test_utils import TestServer
from livekit import api, rtc
from livekit.protocol import models
from livekit.rtc.participant import PublishTrackError

from sferum_shared import SYSTEM_CLOCK
from sfu.server import SfuServer
from tests.integration.livekit_media import HEIGHT, WIDTH, Audience, Publisher
from tests.integration.test_sfu_livekit import PUPIL, TEACHER, joined, until, url
from tests.integration.test_sfu_signalling import OTHER_ROOM, ROOM, SECRET, offline_config, token

pytestmark = pytest.mark.integration


@pytest.fixture
async def sfu() -> AsyncIterator[tuple[SfuServer, TestServer]]:
    server = SfuServer(offline_config(SECRET), SYSTEM_CLOCK)
    test_server = TestServer(server.app())
    await test_server.start_server()
    yield server, test_server
    await test_server.close()


@pytest.mark.timeout(180)
async def test_lesson_everyone_gets_every_track_from_the_right_person(
    sfu: tuple[SfuServer, TestServer],
) -> None:
    _, server = sfu
    teacher = await joined(server, token(TEACHER, "@teacher:school.test:T"))
    pupils = [await joined(server, token(PUPIL, f"@pupil{i}:school.test:P{i}")) for i in range(3)]
    receivers = {room.local_participant.identity: Audience(room) for room in [teacher, *pupils]}
    media = Publisher()
    try:
        camera = await media.camera(teacher)
        assert camera.sid.startswith("TR_")
        await media.microphone(teacher, 330)
        # Two pupils speak, the third listens; a pupil joining later gets all of it too.
        for pupil, hz in zip(pupils[:2], (440, 660), strict=False):
            await media.microphone(pupil, hz)
        late = await joined(server, token(PUPIL, "@late:school.test:L"))
        receivers["@late:school.test:L"] = Audience(late)
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
            assert who not in r.loud_frames and who not in r.video_sizes
            assert "@pupil2:school.test:P2" not in r.loud_frames
            assert set(r.video_sizes) <= {"@teacher:school.test:T"}
        await until(
            lambda: all(
                {"@pupil0:school.test:P0", "@pupil1:school.test:P1"} - {who} <= r.speakers
                for who, r in receivers.items()
            )
        )
    finally:
        await media.stop()
        for r in receivers.values():
            await r.close()
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
        # The SFU refuses the AddTrack (a RequestResponse, checked in test_sfu_livekit.py);
        # LiveKit's Rust SDK 1.2 does not read that answer and gives up after its 10 s.
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
        await media.stop()
        await pupil.disconnect()
        await teacher.disconnect()


@pytest.mark.timeout(120)
async def test_the_teacher_moderates_through_livekits_room_service(
    sfu: tuple[SfuServer, TestServer],
) -> None:
    """With LiveKit's server SDK and the teacher's own token (`roomAdmin`): allow a pupil's
    camera and take it back, mute the pupil, remove them for the rest of the call."""
    _, server = sfu
    http = f"http://{server.host}:{server.port}"
    teacher_token = token(TEACHER, "@teacher:school.test:T")
    teacher = await joined(server, teacher_token)
    pupil_identity = "@pupil:school.test:P"
    pupil = await joined(server, token(PUPIL, pupil_identity))
    audience = Audience(teacher)
    left: list[int] = []
    pupil.on("disconnected", left.append)
    media = Publisher()
    async with (
        api.LiveKitAPI.with_token(teacher_token, http, failover=False) as teacher_api,
        api.LiveKitAPI.with_token(token(PUPIL, pupil_identity), http, failover=False) as pupil_api,
    ):
        try:
            listed = await teacher_api.room.list_participants(
                api.ListParticipantsRequest(room=ROOM)
            )
            assert {p.identity for p in listed.participants} == {
                "@teacher:school.test:T",
                pupil_identity,
            }
            # Refused a camera (test_a_pupil_may_not_publish_a_camera_and_mutes_are_passed_on
            # waits out the SDK's 10 s for that) until the teacher allows it: the pupil's app
            # learns it and may publish.
            sources = pupil.local_participant.permissions.can_publish_sources
            assert list(sources) == [rtc.TrackSource.SOURCE_MICROPHONE]  # empty would be all
            camera = rtc.TrackSource.SOURCE_CAMERA
            allowed = await teacher_api.room.update_participant(
                api.UpdateParticipantRequest(
                    room=ROOM,
                    identity=pupil_identity,
                    permission=api.ParticipantPermission(
                        can_publish=True,
                        can_subscribe=True,
                        can_publish_sources=[models.CAMERA, models.MICROPHONE],
                    ),
                )
            )
            assert models.CAMERA in allowed.permission.can_publish_sources
            await until(lambda: camera in pupil.local_participant.permissions.can_publish_sources)
            await media.camera(pupil)
            await media.microphone(pupil, 440)
            await until(lambda: audience.frames(pupil_identity, "video") > 0)
            assert await audience.flowing(pupil_identity, "video")
            # ... and takes it back: the SFU forwards no more of it.
            await teacher_api.room.update_participant(
                api.UpdateParticipantRequest(
                    room=ROOM,
                    identity=pupil_identity,
                    permission=api.ParticipantPermission(
                        can_publish=True,
                        can_subscribe=True,
                        can_publish_sources=[models.MICROPHONE],
                    ),
                )
            )
            await asyncio.sleep(0.5)
            assert not await audience.flowing(pupil_identity, "video")
            # A mute holds at the SFU, whatever the pupil's app does.
            microphone_sid = next(
                p.sid
                for p in pupil.local_participant.track_publications.values()
                if p.source == rtc.TrackSource.SOURCE_MICROPHONE
            )
            await until(lambda: audience.heard(pupil_identity))
            assert await audience.flowing(pupil_identity, "audio")
            muted = await teacher_api.room.mute_published_track(
                api.MuteRoomTrackRequest(
                    room=ROOM, identity=pupil_identity, track_sid=microphone_sid, muted=True
                )
            )
            assert muted.track.muted
            await asyncio.sleep(0.5)
            assert not await audience.flowing(pupil_identity, "audio")
            # A pupil is no moderator; nobody moderates a call their token is not for.
            with pytest.raises(api.TwirpError) as refused:
                await pupil_api.room.remove_participant(
                    api.RoomParticipantIdentity(room=ROOM, identity="@teacher:school.test:T")
                )
            assert refused.value.status == 403
            with pytest.raises(api.TwirpError) as elsewhere:
                await teacher_api.room.list_participants(
                    api.ListParticipantsRequest(room=OTHER_ROOM)
                )
            assert elsewhere.value.status == 403
            # Removed: out at once, and not back in with a fresh token while the call lasts.
            await teacher_api.room.remove_participant(
                api.RoomParticipantIdentity(room=ROOM, identity=pupil_identity)
            )
            await until(lambda: bool(left))
            assert left == [rtc.DisconnectReason.PARTICIPANT_REMOVED]
            with pytest.raises(rtc.ConnectError):
                await joined(server, token(PUPIL, pupil_identity))
        finally:
            await media.stop()
            await audience.close()
            await pupil.disconnect()
            await teacher.disconnect()


async def encrypted(server: TestServer, identity: str, grant: Any, key: bytes) -> rtc.Room:
    """A participant with Element Call's kind of E2EE: frames encrypted with a shared key the
    SFU never sees (in Element Call, keys travel over Matrix)."""
    room = rtc.Room()
    options = rtc.RoomOptions(
        encryption=rtc.E2EEOptions(key_provider_options=rtc.KeyProviderOptions(shared_key=key))
    )
    await room.connect(url(server), token(grant, identity), options)
    return room


@pytest.mark.timeout(120)
async def test_encrypted_media_passes_byte_for_byte(sfu: tuple[SfuServer, TestServer]) -> None:
    """The SFU forwards E2EE frames untouched and passes the publisher's `encryption` on, so a
    participant holding the key decodes them and one without it does not."""
    _, server = sfu
    key = b"the-lessons-shared-key-0123456789"
    teacher = await encrypted(server, "@teacher:school.test:T", TEACHER, key)
    pupil = await encrypted(server, "@pupil:school.test:P", PUPIL, key)
    stranger = await encrypted(
        server, "@other:school.test:O", PUPIL, b"another-key-9876543210-abcdefghij"
    )
    audiences = {"holder": Audience(pupil), "outsider": Audience(stranger)}
    announced: list[int] = []
    for room in (pupil, stranger):
        room.on(
            "track_subscribed",
            lambda t, publication, w: announced.append(publication.encryption_type),
        )
    media = Publisher()
    try:
        await media.camera(teacher)
        await until(lambda: len(announced) == 2, timeout=30)
        assert set(announced) == {rtc.EncryptionType.GCM}
        teacher_id = "@teacher:school.test:T"
        await until(lambda: audiences["holder"].frames(teacher_id, "video") > 30, timeout=30)
        # The outsider is subscribed to the same track, and the SFU forwards it to everyone
        # in the call (the browser test counts its packets), but no frame decrypts.
        assert await audiences["holder"].flowing(teacher_id, "video", seconds=3)
        assert audiences["outsider"].frames(teacher_id, "video") == 0
        assert teacher_id in audiences["outsider"].tracks
    finally:
        await media.stop()
        for audience in audiences.values():
            await audience.close()
        for room in (teacher, pupil, stranger):
            await room.disconnect()
