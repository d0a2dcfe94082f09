"""LiveKit's RoomService, for a call's teacher: who is there, allow a camera, mute, remove.

LiveKit servers take moderation through this Twirp API (`POST /twirp/livekit.RoomService/
<Method>`, a protobuf or JSON body), from LiveKit's server SDKs and from any client holding a
token with `roomAdmin` for the room. Here that token is the one the auth service gives a
lesson's teacher or a meeting's class teacher (`sfu.grants`): the same person who moderates on
our own call page, with the same rules (`sfu.moderation`), so a teacher's tool built on
LiveKit's SDKs works unchanged. Served:

* `ListParticipants`, `GetParticipant`;
* `UpdateParticipant` with a `permission` whose sources add or drop the camera (a pupil's
  camera allowed, or taken back); nothing else of a participant is changed here;
* `MutePublishedTrack`: the owner's app is asked to mute, and the SFU stops forwarding;
* `RemoveParticipant`: the session ends (`PARTICIPANT_REMOVED`) and the user stays out of
  this call while it lasts.

Other methods (rooms, egress, data) are not served: `bad_route`. Errors are Twirp's JSON
(`{"code", "msg"}`), which the SDKs raise with the message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.protocol import models
from livekit.protocol import room as room_api

from sfu import tokens
from sfu.livekit.participants import bearer_token
from sfu.livekit.server import LiveKitSignalling
from sfu.moderation import moderation_refusal

PREFIX = "/twirp/livekit.RoomService/"
_PROTOBUF = "application/protobuf"
_JSON = "application/json"

M = TypeVar("M", bound=Message)


class TwirpError(Exception):
    """A Twirp error: its code (as Twirp names them) decides the HTTP status."""

    STATUS: ClassVar[dict[str, int]] = {
        "invalid_argument": 400,
        "malformed": 400,
        "unauthenticated": 401,
        "permission_denied": 403,
        "not_found": 404,
        "bad_route": 404,
    }

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        return web.json_response(
            {"code": self.code, "msg": self.message}, status=self.STATUS[self.code]
        )


def read(body: bytes, content_type: str, message: type[M]) -> M:
    """The request message, from protobuf (the SDKs) or JSON (curl, browsers)."""
    try:
        if content_type == _JSON:
            return json_format.Parse(body or b"{}", message())
        parsed = message()
        parsed.ParseFromString(body)
        return parsed
    except (DecodeError, json_format.ParseError) as e:
        raise TwirpError("malformed", f"not a {message.DESCRIPTOR.name}: {e}") from None


def written(message: Message, content_type: str) -> web.Response:
    if content_type == _JSON:
        return web.Response(
            text=json_format.MessageToJson(message, preserving_proto_field_name=True),
            content_type=_JSON,
        )
    return web.Response(body=message.SerializeToString(), content_type=_PROTOBUF)


def camera_wanted(permission: models.ParticipantPermission) -> bool:
    return models.TrackSource.CAMERA in permission.can_publish_sources


class RoomService:
    """The Twirp endpoint over one SFU process's LiveKit calls."""

    def __init__(
        self, signalling: LiveKitSignalling, verify: Callable[[str], dict[str, Any]]
    ) -> None:
        self._signalling = signalling
        self._verify = verify  # token -> claims, raising tokens.TokenError

    def routes(self) -> list[web.RouteDef]:
        return [web.post(PREFIX + "{method}", self._handle)]

    async def _handle(self, request: web.Request) -> web.Response:
        content_type = request.content_type if request.content_type == _JSON else _PROTOBUF
        try:
            claims = self._admin_claims(request)
            handler = {
                "ListParticipants": self._list,
                "GetParticipant": self._get,
                "UpdateParticipant": self._update,
                "MutePublishedTrack": self._mute,
                "RemoveParticipant": self._remove,
            }.get(request.match_info["method"])
            if handler is None:
                raise TwirpError("bad_route", f"{request.match_info['method']} is not served here")
            reply = await handler(claims, await request.read(), content_type)
        except TwirpError as e:
            return e.response()
        return written(reply, content_type)

    def _admin_claims(self, request: web.Request) -> dict[str, Any]:
        token = bearer_token(request)
        if not token:
            raise TwirpError("unauthenticated", "no access token")
        try:
            claims = self._verify(token)
        except tokens.TokenError as e:
            raise TwirpError("unauthenticated", str(e)) from None
        if not tokens.grant_of(claims).room_admin:
            raise TwirpError("permission_denied", "only the call's teacher may moderate it")
        return claims

    @staticmethod
    def _room_of(claims: dict[str, Any], room: str) -> str:
        """The request's room, which must be the token's own."""
        if room != str(claims["video"]["room"]):
            raise TwirpError("permission_denied", "the token is for another call")
        return room

    def _check_target(self, claims: dict[str, Any], room: str, identity: str) -> None:
        exists = self._signalling.find(room, identity) is not None
        refusal = moderation_refusal(
            tokens.grant_of(claims), str(claims["sub"]), identity if exists else None
        )
        if refusal is not None:
            raise TwirpError("not_found" if not exists else "permission_denied", refusal)

    async def _list(self, claims: dict[str, Any], body: bytes, ctype: str) -> Message:
        asked = read(body, ctype, room_api.ListParticipantsRequest)
        room = self._room_of(claims, asked.room)
        return room_api.ListParticipantsResponse(participants=self._signalling.participants(room))

    async def _get(self, claims: dict[str, Any], body: bytes, ctype: str) -> Message:
        asked = read(body, ctype, room_api.RoomParticipantIdentity)
        info = self._signalling.find(self._room_of(claims, asked.room), asked.identity)
        if info is None:
            raise TwirpError("not_found", "no such participant in this call")
        return info

    async def _update(self, claims: dict[str, Any], body: bytes, ctype: str) -> Message:
        asked = read(body, ctype, room_api.UpdateParticipantRequest)
        room = self._room_of(claims, asked.room)
        if asked.metadata or asked.name or asked.attributes or not asked.HasField("permission"):
            raise TwirpError(
                "invalid_argument",
                "only a participant's permission (the camera) can be changed here",
            )
        self._check_target(claims, room, asked.identity)
        await self._signalling.allow_camera(room, asked.identity, camera_wanted(asked.permission))
        info = self._signalling.find(room, asked.identity)
        if info is None:  # left meanwhile
            raise TwirpError("not_found", "no such participant in this call")
        return info

    async def _mute(self, claims: dict[str, Any], body: bytes, ctype: str) -> Message:
        asked = read(body, ctype, room_api.MuteRoomTrackRequest)
        room = self._room_of(claims, asked.room)
        self._check_target(claims, room, asked.identity)
        try:
            track = await self._signalling.mute_track(
                room, asked.identity, asked.track_sid, asked.muted
            )
        except KeyError:
            raise TwirpError("not_found", "no such track of that participant") from None
        return room_api.MuteRoomTrackResponse(track=track)

    async def _remove(self, claims: dict[str, Any], body: bytes, ctype: str) -> Message:
        asked = read(body, ctype, room_api.RoomParticipantIdentity)
        room = self._room_of(claims, asked.room)
        self._check_target(claims, room, asked.identity)
        await self._signalling.remove_participant(room, asked.identity)
        return room_api.RemoveParticipantResponse()
