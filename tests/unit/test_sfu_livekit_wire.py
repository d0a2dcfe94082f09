"""LiveKit's signalling frames as the SFU builds and reads them (sfu.livekit.wire), checked by
parsing them back with LiveKit's own protobufs: what the SDKs require of each field."""

from __future__ import annotations

import json

import pytest
from livekit.protocol import models, rtc

from sfu.grants import CAMERA, MICROPHONE, SCREEN_SHARE, Grant
from sfu.livekit import wire
from sfu.livekit.edge import rtc_url
from sfu.livekit.participants import ice_candidate

TEACHER = Grant.publisher(CAMERA, MICROPHONE, SCREEN_SHARE, room_admin=True)
PUPIL = Grant.publisher(MICROPHONE)
VIEWER = Grant(can_publish=False, hidden=True)
TURN = [{"urls": ["turn:turn.school.test:3478?transport=udp"], "username": "u", "credential": "c"}]


def response(frame: bytes) -> rtc.SignalResponse:
    parsed = rtc.SignalResponse()
    parsed.ParseFromString(frame)
    return parsed


def info(grant: Grant, **kw: object) -> models.ParticipantInfo:
    fields: dict[str, object] = {
        "sid": wire.new_sid("PA_"),
        "identity": "@u:school.test:DEV",
        "grant": grant,
        "version": 1,
        "joined_at": 1_760_000_000,
    }
    return wire.participant_info(**{**fields, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["RM_", "PA_", "TR_"])
def test_ids_carry_the_prefix_the_sdks_check(prefix: str) -> None:
    sids = {wire.new_sid(prefix) for _ in range(50)}
    assert len(sids) == 50
    assert all(s.startswith(prefix) and len(s) == 15 and s[3:].isalnum() for s in sids)


@pytest.mark.parametrize(
    ("grant", "publish", "sources", "hidden"),
    [
        (TEACHER, True, [models.CAMERA, models.MICROPHONE, models.SCREEN_SHARE], False),
        (PUPIL, True, [models.MICROPHONE], False),
        (Grant.publisher(MICROPHONE, CAMERA), True, [models.CAMERA, models.MICROPHONE], False),
        (Grant.viewer(), False, [], False),
        (VIEWER, False, [], True),
    ],
)
def test_grant_becomes_livekit_permission(
    grant: Grant, publish: bool, sources: list[int], hidden: bool
) -> None:
    permission = wire.permission(grant)
    assert permission.can_publish is publish and permission.can_publish_data is publish
    assert list(permission.can_publish_sources) == sources
    assert permission.can_subscribe and permission.hidden is hidden


def test_join_response_has_what_the_clients_require() -> None:
    me, other = info(PUPIL), info(TEACHER, identity="@t:school.test:T")
    frame = wire.join_response(
        room_sid="RM_abc", room_name="room", me=me, others=[other], servers=TURN, now=1_760_000_000
    )
    join = response(frame).join
    assert (join.room.sid, join.room.name, join.room.creation_time) == (
        "RM_abc",
        "room",
        1_760_000_000,
    )
    assert join.participant == me and list(join.other_participants) == [other]
    major, minor, _patch = (int(part) for part in join.server_version.split("."))  # semver
    assert (major, minor) >= (1, 8) and join.server_info.version == join.server_version
    assert join.server_info.protocol == wire.PROTOCOL_VERSION
    assert [list(s.urls) for s in join.ice_servers] == [TURN[0]["urls"]]
    assert (join.ice_servers[0].username, join.ice_servers[0].credential) == ("u", "c")
    assert join.ping_interval > 0 and join.ping_timeout > join.ping_interval
    assert not join.subscriber_primary
    assert join.client_configuration.resume_connection == models.ClientConfigSetting.DISABLED
    assert [c.mime for c in join.enabled_publish_codecs] == ["video/VP8"]


def test_participant_state_and_version() -> None:
    gone = info(PUPIL, version=2, active=False)
    update = response(wire.participants_update([gone])).update
    assert [(p.state, p.version) for p in update.participants] == [
        (models.ParticipantInfo.DISCONNECTED, 2)
    ]
    assert info(PUPIL).state == models.ParticipantInfo.ACTIVE
    assert info(PUPIL).joined_at_ms == 1_760_000_000_000


def test_answer_echoes_the_offer_id() -> None:
    answer = response(wire.answer("v=0\r\n", 7)).answer
    assert (answer.type, answer.sdp, answer.id) == ("answer", "v=0\r\n", 7)


def test_pongs() -> None:
    pong = response(wire.pong(123, 456)).pong_resp
    assert (pong.last_ping_timestamp, pong.timestamp) == (123, 456)
    assert response(wire.legacy_pong(99)).pong == 99


def test_leave_and_refresh_token() -> None:
    leave = response(wire.leave(models.DisconnectReason.PARTICIPANT_REMOVED)).leave
    assert leave.reason == models.DisconnectReason.PARTICIPANT_REMOVED
    assert leave.action == rtc.LeaveRequest.DISCONNECT
    assert response(wire.leave(models.SERVER_SHUTDOWN, reconnect=True)).leave.action == (
        rtc.LeaveRequest.RECONNECT
    )
    assert response(wire.refresh_token("jwt")).refresh_token == "jwt"


def test_requests_are_read() -> None:
    sent = rtc.SignalRequest(ping_req=rtc.Ping(timestamp=5, rtt=1)).SerializeToString()
    assert wire.parse_request(sent).ping_req.timestamp == 5


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xff\xff",
        b'{"type": "join"}',
        rtc.SignalResponse(pong=1).SerializeToString()[:1],
    ],
)
def test_garbage_is_no_request(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.parse_request(data)


def test_trickled_candidates() -> None:
    line = "candidate:1 1 udp 2130706431 192.0.2.7 50000 typ host"
    candidate = ice_candidate(json.dumps({"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}))
    assert candidate is not None
    assert (candidate.ip, candidate.port, candidate.type) == ("192.0.2.7", 50000, "host")
    assert (candidate.sdpMid, candidate.sdpMLineIndex) == ("0", 0)
    assert ice_candidate(json.dumps({"candidate": "", "sdpMid": "0"})) is None  # end of them


@pytest.mark.parametrize(
    "init",
    [
        "not json",
        "[1, 2]",
        json.dumps({"candidate": "candidate:garbage"}),
        json.dumps({"candidate": "candidate:1 1 udp notanumber 192.0.2.7 50000 typ host"}),
    ],
)
def test_unreadable_candidates_are_refused(init: str) -> None:
    with pytest.raises(wire.WireError):
        ice_candidate(init)


def add_track(source: int, kind: int, **kw: object) -> rtc.AddTrackRequest:
    return rtc.AddTrackRequest(cid="c1", source=source, type=kind, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("grant", "source", "kind", "allowed"),
    [
        (TEACHER, models.CAMERA, models.VIDEO, True),
        (TEACHER, models.SCREEN_SHARE, models.VIDEO, True),
        (TEACHER, models.MICROPHONE, models.AUDIO, True),
        (TEACHER, models.SCREEN_SHARE_AUDIO, models.AUDIO, False),  # never granted
        (TEACHER, models.UNKNOWN, models.VIDEO, False),
        (TEACHER, models.CAMERA, models.AUDIO, False),  # a source carries its own kind
        (TEACHER, models.CAMERA, models.DATA, False),
        (PUPIL, models.MICROPHONE, models.AUDIO, True),
        (PUPIL, models.MICROPHONE, models.VIDEO, False),
        (PUPIL, models.CAMERA, models.VIDEO, False),
        (Grant.publisher(MICROPHONE, CAMERA), models.CAMERA, models.VIDEO, True),
        (Grant.viewer(), models.MICROPHONE, models.AUDIO, False),
        (VIEWER, models.MICROPHONE, models.AUDIO, False),
    ],
)
def test_who_may_publish_what(grant: Grant, source: int, kind: int, allowed: bool) -> None:
    assert wire.may_publish(grant, add_track(source, kind)) is allowed


def test_track_info_keeps_what_the_publisher_announced() -> None:
    request = add_track(
        models.CAMERA,
        models.VIDEO,
        name="camera",
        width=1280,
        height=720,
        muted=True,
        encryption=models.Encryption.GCM,
        stream="camera",
    )
    info = wire.track_info("TR_x", request)
    assert (info.sid, info.type, info.source, info.name) == (
        "TR_x",
        models.VIDEO,
        models.CAMERA,
        "camera",
    )
    assert (info.width, info.height, info.muted) == (1280, 720, True)
    # Element Call turns decryption on only if the SFU passes the encryption on.
    assert info.encryption == models.Encryption.GCM
    assert info.mime_type == "video/VP8" and [c.mime_type for c in info.codecs] == ["video/VP8"]
    assert wire.kind_of(info) == "video"
    audio = wire.track_info("TR_y", add_track(models.MICROPHONE, models.AUDIO))
    assert (audio.mime_type, wire.kind_of(audio)) == ("audio/opus", "audio")
    assert audio.encryption == models.Encryption.NONE


def test_publishing_frames() -> None:
    track = wire.track_info("TR_x", add_track(models.MICROPHONE, models.AUDIO))
    published = response(wire.track_published("c1", track)).track_published
    assert (published.cid, published.track.sid) == ("c1", "TR_x")
    refused = response(wire.add_track_refused(add_track(models.CAMERA, models.VIDEO), "no"))
    assert refused.request_response.reason == rtc.RequestResponse.NOT_ALLOWED
    assert refused.request_response.add_track.cid == "c1"
    offer = response(wire.offer("v=0\r\n", 7)).offer
    assert (offer.type, offer.sdp, offer.id) == ("offer", "v=0\r\n", 7)
    assert wire.stream_ids("PA_a", "TR_b") == ("PA_a|TR_b", "TR_b")
    assert [t.sid for t in info(PUPIL, tracks=[track]).tracks] == ["TR_x"]


def test_speakers_changed() -> None:
    speakers = response(wire.speakers_changed({"PA_a": 0.5, "PA_b": 0.0})).speakers_changed
    assert [(s.sid, round(s.level, 2), s.active) for s in speakers.speakers] == [
        ("PA_a", 0.5, True),
        ("PA_b", 0.0, False),
    ]


@pytest.mark.parametrize(
    ("msid", "expected"),
    [
        ("PA_a|TR_b TR_b", ("PA_a", "TR_b")),
        ("PA_a|TR_b", ("PA_a", "TR_b")),
        ("janus janus1", None),  # not LiveKit's: dropped by an edge
        ("PA_a TR_b", None),
        ("TR_b|PA_a TR_b", None),
        ("", None),
    ],
)
def test_an_edge_reads_publisher_and_track_from_the_origins_msid(
    msid: str, expected: tuple[str, str] | None
) -> None:
    assert wire.stream_of(msid) == expected
    if expected is not None:
        assert wire.stream_of(" ".join(wire.stream_ids(*expected))) == expected


def test_an_edges_frames_to_its_origin() -> None:
    answer = rtc.SignalRequest()
    answer.ParseFromString(wire.client_answer("v=0", 3))
    assert (answer.answer.type, answer.answer.sdp, answer.answer.id) == ("answer", "v=0", 3)
    ping = rtc.SignalRequest()
    ping.ParseFromString(wire.ping_request(1234))
    assert ping.ping_req.timestamp == 1234
    frame = wire.parse_response(wire.offer("v=0", 7))
    assert (frame.offer.sdp, frame.offer.id) == ("v=0", 7)
    with pytest.raises(wire.WireError, match="not a SignalResponse"):
        wire.parse_response(b"\xff\xff\xff")


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("ws://127.0.0.1:8010/ws", "ws://127.0.0.1:8010/rtc"),
        ("http://127.0.0.1:8010", "ws://127.0.0.1:8010/rtc"),
        ("https://sfu.school.example/ws", "wss://sfu.school.example/rtc"),
        ("wss://sfu.school.example/ws", "wss://sfu.school.example/rtc"),
    ],
)
def test_the_origins_livekit_url(origin: str, expected: str) -> None:
    assert rtc_url(origin) == expected
