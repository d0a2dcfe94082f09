"""The Twirp edge of the teacher's RoomService (sfu.livekit.roomservice): bodies in both of
Twirp's encodings, errors in its JSON shape."""

from __future__ import annotations

import json

import pytest
from livekit.protocol import models
from livekit.protocol import room as room_api

from sfu.livekit.roomservice import TwirpError, camera_wanted, read, written

REQUEST = room_api.MuteRoomTrackRequest(room="r", identity="@p:s:D", track_sid="TR_x", muted=True)


def test_protobuf_and_json_bodies_are_the_same_request() -> None:
    binary = read(
        REQUEST.SerializeToString(), "application/protobuf", room_api.MuteRoomTrackRequest
    )
    text = json.dumps({"room": "r", "identity": "@p:s:D", "track_sid": "TR_x", "muted": True})
    assert (
        binary == REQUEST == read(text.encode(), "application/json", room_api.MuteRoomTrackRequest)
    )
    # An empty JSON body is an empty request (Twirp's own convention), not an error.
    assert read(b"", "application/json", room_api.ListParticipantsRequest).room == ""


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xff\xff", "application/protobuf"),
        (b"{not json", "application/json"),
        (b'{"room": 5}', "application/json"),
        (b'{"rooom": "r"}', "application/json"),
    ],
)
def test_malformed_bodies_say_so(body: bytes, content_type: str) -> None:
    with pytest.raises(TwirpError) as error:
        read(body, content_type, room_api.ListParticipantsRequest)
    assert error.value.code == "malformed" and "ListParticipantsRequest" in error.value.message


def test_replies_in_the_requests_encoding() -> None:
    assert written(REQUEST, "application/protobuf").body == REQUEST.SerializeToString()
    as_json = json.loads(written(REQUEST, "application/json").text or "")
    assert as_json["track_sid"] == "TR_x" and as_json["muted"] is True


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("malformed", 400),
        ("invalid_argument", 400),
        ("unauthenticated", 401),
        ("permission_denied", 403),
        ("not_found", 404),
        ("bad_route", 404),
    ],
)
def test_errors_are_twirps(code: str, status: int) -> None:
    response = TwirpError(code, "why").response()
    assert response.status == status
    assert json.loads(response.text or "") == {"code": code, "msg": "why"}


def test_the_camera_is_wanted_when_listed() -> None:
    camera = models.ParticipantPermission(can_publish_sources=[models.CAMERA, models.MICROPHONE])
    assert camera_wanted(camera)
    assert not camera_wanted(models.ParticipantPermission(can_publish_sources=[models.MICROPHONE]))
