"""A call's state and the checks on it: rooms, participants, what may be published, what is said.

Kept apart from `sfu.server` (sockets and I/O) so the checks are tested as plain functions.
A pupil's rights can grow during a call (the teacher allows the camera: `sfu.moderation`), so
what a participant may publish is the token's grant plus that state, checked on every offer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
from aiohttp import web

from sfu.forwarding import MediaRouter
from sfu.grants import CAMERA, MICROPHONE, SCREEN_SHARE, Grant, Refusal
from sfu.membership import CLOSE_REMOVED, Session, close_reason
from sfu.signalling import encode_message


def offered_kinds(sdp: str) -> frozenset[str]:
    """The media kinds (`audio`, `video`, ...) of an SDP's m-lines that are not disabled."""
    kinds = set()
    for line in sdp.splitlines():
        if line.startswith("m="):
            parts = line[2:].split()
            if len(parts) >= 2 and parts[1] != "0":  # port 0: a rejected m-line
                kinds.add(parts[0])
    return frozenset(kinds)


def allowed_kinds(grant: Grant) -> frozenset[str]:
    """The media kinds a grant lets its holder publish.

    LiveKit reads an empty `canPublishSources` as "any source"; our grants always list them
    when publishing, so the empty case only matters for tokens minted by hand.
    """
    if not grant.can_publish:
        return frozenset()
    sources = set(grant.can_publish_sources) or {CAMERA, MICROPHONE, SCREEN_SHARE}
    kinds = set()
    if MICROPHONE in sources:
        kinds.add("audio")
    if sources & {CAMERA, SCREEN_SHARE}:
        kinds.add("video")
    return frozenset(kinds)


def publish_refusal(grant: Grant, sdp: str) -> str | None:
    """Why this grant may not publish this offer, or None if it may."""
    if not grant.can_publish:
        return "publish refused: the token does not allow publishing"
    extra = offered_kinds(sdp) - allowed_kinds(grant)
    if extra:
        return f"publish refused: the token does not allow publishing {', '.join(sorted(extra))}"
    return None


@attrs.define(eq=False)
class Participant:
    identity: str
    grant: Grant
    ws: web.WebSocketResponse
    session: Session | None = None  # None: a token without our private claim, not watched
    muted: set[str] = attrs.field(factory=set)  # by the participant (what others are told)
    muted_by_teacher: set[str] = attrs.field(factory=set)  # enforced by the SFU (`moderation`)
    hand_raised: bool = False
    camera_allowed: bool = False  # the teacher let this pupil turn the camera on

    @property
    def user(self) -> str:
        """Whom a removal bars from rejoining: the Matrix user, whatever the device."""
        return self.session.user_id if self.session is not None else self.identity

    def describe(self, publishing: bool) -> dict[str, Any]:
        """What everyone in the call is told about this participant.

        The Matrix user is named only for those who may publish (the lesson's members, the
        staff in a broadcast): a broadcast's viewers are families of the whole school, whom the
        platform keeps out of school-wide member lists (docs/rooms-and-rules.md).
        """
        described: dict[str, Any] = {
            "identity": self.identity,
            "publishing": publishing,
            "muted": sorted(self.muted | self.muted_by_teacher),
            "hand_raised": self.hand_raised,
            "camera_allowed": self.camera_allowed,
        }
        if self.grant.can_publish and self.session is not None:
            described["user"] = self.session.user_id
        return described


@attrs.define(eq=False)
class Room:
    name: str
    router: MediaRouter = attrs.field(factory=MediaRouter)
    participants: dict[str, Participant] = attrs.field(factory=dict)
    upstream: asyncio.Task[None] | None = None  # an edge's link to the origin (`sfu.edge`)
    removed: set[str] = attrs.field(factory=set)  # users a teacher removed: barred till it ends

    def listing(self) -> list[dict[str, Any]]:
        """What everyone is told: hidden participants (none today, MSC4195) are left out."""
        return [
            p.describe(self.router.is_publishing(p.identity))
            for p in self.participants.values()
            if not p.grant.hidden
        ]


def speakers_message(room: Room, slots: tuple[str | None, ...]) -> str:
    """`speakers`: who holds a speaker slot, of the participants everyone may see."""
    listed = {p.identity for p in room.participants.values() if not p.grant.hidden}
    return encode_message("speakers", speakers=[s for s in slots if s in listed])


async def end_socket(ws: web.WebSocketResponse, refusal: Refusal) -> None:
    """Tell a client why its session ends (`removed`), then close with the refusal's code."""
    if not ws.closed:
        notice = encode_message("removed", reason=refusal.value, message=refusal.message)
        await asyncio.gather(ws.send_str(notice), return_exceptions=True)
    await ws.close(code=CLOSE_REMOVED, message=close_reason(refusal).encode())
