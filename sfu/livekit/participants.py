"""The state of LiveKit calls in one SFU process: a participant's connection, a call's room,
and the two things read off a request before anything else (the token, a trickled candidate).

Kept apart from the signalling (`sfu.livekit.server`), which moves them through a call's life.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import attrs
from aiohttp import web
from aiortc.rtcicetransport import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp
from livekit.protocol import models

from sfu.grants import Grant
from sfu.livekit import wire
from sfu.livekit.media import TrackRouter
from sfu.membership import Session


def bearer_token(request: web.Request) -> str:
    """The token as the JS SDK sends it (query) or the Rust and Python ones (header)."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip()
    return request.query.get("access_token", "")


def ice_candidate(init: str) -> RTCIceCandidate | None:
    """An `RTCIceCandidateInit` JSON as clients trickle it; None for the end-of-candidates."""
    try:
        fields = json.loads(init)
        line = str(fields.get("candidate") or "")
    except (ValueError, AttributeError):
        raise wire.WireError(f"a trickle that is no RTCIceCandidateInit: {init[:80]!r}") from None
    if not line:
        return None
    fields_of_line = line.removeprefix("candidate:").split()
    try:
        # aiortc only asserts the eight fields of RFC 8839 §5.1; checked here so `-O` is safe.
        if len(fields_of_line) < 8:
            raise ValueError("fewer than eight fields")
        candidate = candidate_from_sdp(" ".join(fields_of_line))
    except (ValueError, IndexError):
        raise wire.WireError(f"an ICE candidate aiortc cannot read: {line[:80]!r}") from None
    candidate.sdpMid = fields.get("sdpMid")
    candidate.sdpMLineIndex = fields.get("sdpMLineIndex")
    return candidate


@attrs.define(eq=False)
class Connection:
    """One participant's LiveKit connection: who it is, what it may and does publish."""

    ws: web.WebSocketResponse
    sid: str
    identity: str
    token_grant: Grant  # what the token allows; `grant` adds the camera a teacher allowed
    claims: dict[str, Any]
    joined_at: int
    session: Session | None
    grant: Grant = attrs.field()
    version: int = 1
    #: Tracks announced (AddTrack) and allowed but not offered yet, by the client's track ID.
    announced: dict[str, models.TrackInfo] = attrs.Factory(dict)
    published: dict[str, models.TrackInfo] = attrs.Factory(dict)  # by track ID

    @grant.default
    def _token_grant(self) -> Grant:
        return self.token_grant

    @property
    def user(self) -> str:
        """The Matrix user (a removal holds for all their devices)."""
        return self.session.user_id if self.session is not None else self.identity

    def info(self, *, active: bool = True) -> models.ParticipantInfo:
        return wire.participant_info(
            sid=self.sid,
            identity=self.identity,
            grant=self.grant,
            version=self.version,
            joined_at=self.joined_at,
            active=active,
            tracks=self.published.values(),
        )


@attrs.define(eq=False)
class Room:
    """One call: its participants, their media, and who the teacher removed from it."""

    name: str
    sid: str
    router: TrackRouter
    connections: dict[str, Connection] = attrs.Factory(dict)
    removed: set[str] = attrs.Factory(set)  # Matrix users the teacher removed from this call
    #: On an edge: the participants at the origin, by ID, and the link that mirrors them.
    remote: dict[str, models.ParticipantInfo] = attrs.Factory(dict)
    link: asyncio.Task[None] | None = None

    def visible(self, but: Connection | None = None) -> list[Connection]:
        """The participants others are told about: hidden ones (broadcast viewers) are not."""
        return [c for c in self.connections.values() if c is not but and not c.grant.hidden]
