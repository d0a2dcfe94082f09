"""LiveKit's signalling messages, built and read with the `livekit-protocol` package. Pure.

Every frame on `/rtc` is one binary protobuf: `SignalRequest` from the client, `SignalResponse`
from the server (livekit_rtc.proto). Nothing here is written by hand on the wire; this module
only picks the fields the clients need (reference: livekit.md §1) and fills them from our own
participants and grants. The last section is the client's side, which an edge speaks to its
origin (`sfu.livekit.edge`).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc

from sfu.grants import CAMERA, MICROPHONE, SCREEN_SHARE, Grant

#: What we tell clients we are. JS refuses an empty version, below 1.8.0 it turns RPC off, and
#: the Rust SDK parses it as semver: a plain LiveKit version number.
SERVER_VERSION = "1.9.0"
PROTOCOL_VERSION = 16
#: LiveKit's own values (pkg/rtc/participant.go); zero would crash the Rust SDK.
PING_INTERVAL_SECONDS = 5
PING_TIMEOUT_SECONDS = 15

_SID_ALPHABET = string.ascii_letters + string.digits
_SOURCES = {
    CAMERA: models.TrackSource.CAMERA,
    MICROPHONE: models.TrackSource.MICROPHONE,
    SCREEN_SHARE: models.TrackSource.SCREEN_SHARE,
}


#: The one codec forwarded per kind (`sfu.codecs`), as LiveKit names it in a TrackInfo.
_MIME_TYPES = {models.TrackType.AUDIO: "audio/opus", models.TrackType.VIDEO: "video/VP8"}
#: What each source may carry: a grant for the microphone is no grant for video.
_TYPE_OF_SOURCE = {
    models.TrackSource.CAMERA: models.TrackType.VIDEO,
    models.TrackSource.MICROPHONE: models.TrackType.AUDIO,
    models.TrackSource.SCREEN_SHARE: models.TrackType.VIDEO,
}
_KINDS = {models.TrackType.AUDIO: "audio", models.TrackType.VIDEO: "video"}


class WireError(ValueError):
    """A frame that is not a SignalRequest (or, at an edge, a SignalResponse)."""


def new_sid(prefix: str) -> str:
    """A LiveKit-style ID: `RM_` for rooms, `PA_` for participants, `TR_` for tracks (the
    Rust SDK refuses a participant whose ID lacks its prefix)."""
    return prefix + "".join(secrets.choice(_SID_ALPHABET) for _ in range(12))


M = TypeVar("M", rtc.SignalRequest, rtc.SignalResponse)


def _parse(message: M, data: bytes) -> M:
    name = type(message).__name__
    try:
        message.ParseFromString(data)
    except DecodeError as e:
        raise WireError(f"not a {name}: {e}") from None
    if message.WhichOneof("message") is None:
        raise WireError(f"a {name} with no message")
    return message


def parse_request(data: bytes) -> rtc.SignalRequest:
    return _parse(rtc.SignalRequest(), data)


def permission(grant: Grant) -> models.ParticipantPermission:
    """The grant as LiveKit clients read it: they refuse to publish an unlisted source."""
    return models.ParticipantPermission(
        can_subscribe=grant.can_subscribe,
        can_publish=grant.can_publish,
        can_publish_data=grant.can_publish,
        can_publish_sources=[_SOURCES[s] for s in grant.can_publish_sources if s in _SOURCES],
        hidden=grant.hidden,
    )


def may_publish(grant: Grant, request: rtc.AddTrackRequest) -> bool:
    """Whether the grant lets this track be published: its source is granted and the track is
    of that source's kind (audio for the microphone, video for the camera and the screen)."""
    allowed = {_SOURCES[s] for s in grant.can_publish_sources if s in _SOURCES}
    return (
        grant.can_publish
        and request.source in allowed
        and _TYPE_OF_SOURCE.get(request.source) == request.type
    )


def kind_of(info: models.TrackInfo) -> str:
    """The track's WebRTC kind ("audio" or "video"), as its m-line says it."""
    return _KINDS[info.type]


def track_info(sid: str, request: rtc.AddTrackRequest) -> models.TrackInfo:
    """The published track as everyone is told of it, from the publisher's AddTrack.

    `encryption` is copied as announced: receivers turn decryption on only when it says so
    (Element Call's E2EE); the SFU forwards the encrypted frames as they are.
    """
    mime_type = _MIME_TYPES[request.type]
    return models.TrackInfo(
        sid=sid,
        type=request.type,
        source=request.source,
        name=request.name,
        muted=request.muted,
        width=request.width,
        height=request.height,
        disable_dtx=request.disable_dtx,
        stereo=request.stereo,
        disable_red=True,  # Opus alone is negotiated (`sfu.codecs`)
        encryption=request.encryption,
        stream=request.stream,
        mime_type=mime_type,
        codecs=[models.SimulcastCodecInfo(mime_type=mime_type, cid=request.cid)],
    )


def stream_ids(participant_sid: str, track_sid: str) -> tuple[str, str]:
    """The msid of a forwarded track's m-line: LiveKit clients read the publisher and the
    track from the stream ID, `PA_x|TR_y` (LiveKit's PackStreamID)."""
    return f"{participant_sid}|{track_sid}", track_sid


def participant_info(
    *,
    sid: str,
    identity: str,
    grant: Grant,
    version: int,
    joined_at: int,
    active: bool = True,
    tracks: Iterable[models.TrackInfo] = (),
) -> models.ParticipantInfo:
    state = models.ParticipantInfo.ACTIVE if active else models.ParticipantInfo.DISCONNECTED
    return models.ParticipantInfo(
        sid=sid,
        identity=identity,
        state=state,
        version=version,
        joined_at=joined_at,
        joined_at_ms=joined_at * 1000,
        permission=permission(grant),
        is_publisher=grant.can_publish,
        tracks=list(tracks),
    )


def ice_servers(servers: Sequence[Mapping[str, Any]]) -> list[rtc.ICEServer]:
    """The deployment's TURN (`sfu.turn.ice_servers`) as LiveKit's JoinResponse carries it."""
    return [
        rtc.ICEServer(
            urls=list(server["urls"]),
            username=server["username"],
            credential=server["credential"],
        )
        for server in servers
    ]


def _frame(**message: Any) -> bytes:
    return bytes(rtc.SignalResponse(**message).SerializeToString())


def join_response(
    *,
    room_sid: str,
    room_name: str,
    me: models.ParticipantInfo,
    others: Iterable[models.ParticipantInfo],
    servers: Sequence[Mapping[str, Any]],
    now: int,
) -> bytes:
    """The first frame of every connection (clients wait 5 s for it).

    `subscriber_primary` false: the client offers on its publisher connection at once and the
    server offers on the subscriber one when there is something to receive. Resuming is off, so
    a dropped connection rejoins in full; VP8 is the one video codec (no transcoding here).
    """
    return _frame(
        join=rtc.JoinResponse(
            room=models.Room(sid=room_sid, name=room_name, creation_time=now),
            participant=me,
            other_participants=list(others),
            server_version=SERVER_VERSION,
            server_info=models.ServerInfo(
                edition=models.ServerInfo.Standard,
                version=SERVER_VERSION,
                protocol=PROTOCOL_VERSION,
            ),
            ice_servers=ice_servers(servers),
            subscriber_primary=False,
            ping_interval=PING_INTERVAL_SECONDS,
            ping_timeout=PING_TIMEOUT_SECONDS,
            client_configuration=models.ClientConfiguration(
                resume_connection=models.ClientConfigSetting.DISABLED
            ),
            enabled_publish_codecs=[models.Codec(mime="video/VP8")],
        )
    )


def participants_update(infos: Iterable[models.ParticipantInfo]) -> bytes:
    """Joins, changes and (with state DISCONNECTED) departures of other participants."""
    return _frame(update=rtc.ParticipantUpdate(participants=list(infos)))


def answer(sdp: str, offer_id: int) -> bytes:
    """The answer to the client's offer; the id is echoed, or the client drops the answer."""
    return _frame(answer=rtc.SessionDescription(type="answer", sdp=sdp, id=offer_id))


def offer(sdp: str, offer_id: int) -> bytes:
    """The SFU's offer on the subscriber connection; the client echoes the id."""
    return _frame(offer=rtc.SessionDescription(type="offer", sdp=sdp, id=offer_id))


def track_published(cid: str, info: models.TrackInfo) -> bytes:
    """The answer to AddTrack (clients wait 10 s for it), matched by the client's track ID."""
    return _frame(track_published=rtc.TrackPublishedResponse(cid=cid, track=info))


def add_track_refused(request: rtc.AddTrackRequest, message: str) -> bytes:
    """An AddTrack the participant's grant does not allow."""
    return _frame(
        request_response=rtc.RequestResponse(
            reason=rtc.RequestResponse.NOT_ALLOWED, message=message, add_track=request
        )
    )


def server_mute(track_sid: str, muted: bool) -> bytes:
    """Asks a track's owner to mute it (or allows it to unmute): the teacher's mute."""
    return _frame(mute=rtc.MuteTrackRequest(sid=track_sid, muted=muted))


def speakers_changed(levels: Mapping[str, float]) -> bytes:
    """Who speaks now: participant ID to level (0 to 1); a level of 0 means stopped."""
    return _frame(
        speakers_changed=rtc.SpeakersChanged(
            speakers=[
                models.SpeakerInfo(sid=sid, level=level, active=level > 0)
                for sid, level in levels.items()
            ]
        )
    )


def pong(last_ping_timestamp: int, now_ms: int) -> bytes:
    return _frame(pong_resp=rtc.Pong(last_ping_timestamp=last_ping_timestamp, timestamp=now_ms))


def legacy_pong(timestamp: int) -> bytes:
    """The answer to the older `ping` (an int64), which livekit-client still sends."""
    return _frame(pong=timestamp)


def refresh_token(token: str) -> bytes:
    """A fresh token, for the client to rejoin with after the first one expired."""
    return _frame(refresh_token=token)


def leave(reason: models.DisconnectReason, *, reconnect: bool = False) -> bytes:
    """The server ends the session (`models.DisconnectReason`: e.g. PARTICIPANT_REMOVED)."""
    action = rtc.LeaveRequest.RECONNECT if reconnect else rtc.LeaveRequest.DISCONNECT
    return _frame(leave=rtc.LeaveRequest(reason=reason, action=action))


# -- an edge at its origin: the client's side of the same protocol ---------------------------


def parse_response(data: bytes) -> rtc.SignalResponse:
    """A frame from the origin, read by an edge (`sfu.livekit.edge`)."""
    return _parse(rtc.SignalResponse(), data)


def _request(**message: Any) -> bytes:
    return bytes(rtc.SignalRequest(**message).SerializeToString())


def client_answer(sdp: str, offer_id: int) -> bytes:
    """An edge's answer to its origin's offer of the room's tracks."""
    return _request(answer=rtc.SessionDescription(type="answer", sdp=sdp, id=offer_id))


def ping_request(now_ms: int) -> bytes:
    """An edge's ping: the origin ends a connection silent for a ping timeout."""
    return _request(ping_req=rtc.Ping(timestamp=now_ms))


def stream_of(msid: str) -> tuple[str, str] | None:
    """The publisher's and the track's ID from an m-line's msid, `PA_x|TR_y TR_y` (see
    :func:`stream_ids`); None for an msid of another shape."""
    stream = msid.split()[0] if msid.strip() else ""
    participant_sid, _, track_sid = stream.partition("|")
    if not participant_sid.startswith("PA_") or not track_sid.startswith("TR_"):
        return None
    return participant_sid, track_sid
