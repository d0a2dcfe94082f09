"""Who may do what in a call (docs/calls.md), from plain facts: pure, so the table is tested alone.

lk-jwt-service gives every holder of an OpenID token full rights in any room. Here the rights
follow the room's kind and the caller's place in the school, as the module's directory tells it:

* lesson (one per class): only accounts joined to the Matrix room get in. The class's teachers
  publish camera, microphone and screen; its pupils their microphone, and their camera only when
  the teacher allowed it (`pupil_camera_allowed`); anyone else the platform let into the room
  (a school adult, say) watches.
* broadcast (one per school): the school's staff publish (the same people who may post in the
  broadcast room); every verified member of the school watches without joining the room, since
  families are kept out of school-wide member lists.
* parents' meeting (one per class, `#meeting-<class>`): only its joined members; the class
  teacher leads (everything, and moderates), the school's staff publish everything, guardians
  of the class's pupils their camera and microphone; anyone else watches.
* direct chat (a room the platform did not make, with exactly two joined members, both of the
  directory): the two call each other, both publishing camera, microphone and screen. That
  they share the room at all is what the contact rules allowed (a parent and the class teacher,
  say); a third member makes it a group, and groups hold no calls.
* any other room: no calls.

The request shape of lk-jwt-service has no "I want to publish" flag, so nobody is refused for
asking too much: a pupil in a broadcast simply gets a grant with `can_publish` false.
"""

from __future__ import annotations

import enum
from typing import TypeVar

import attrs

from sferum_shared.model import Role
from sferum_shared.rooms import RoomKind
from sferum_shared.vocabulary import Reason

CAMERA = "camera"
MICROPHONE = "microphone"
SCREEN_SHARE = "screen_share"
SOURCES = (CAMERA, MICROPHONE, SCREEN_SHARE)  # LiveKit's names for published sources


class Refusal(enum.Enum):
    """Why a caller gets no token (with the words for it); the value goes under `Key.REASON`."""

    NOT_IN_DIRECTORY = Reason.SFU_NOT_IN_DIRECTORY
    NO_CALLS_HERE = Reason.SFU_NO_CALLS_IN_ROOM
    NOT_JOINED = Reason.SFU_NOT_JOINED
    BANNED = Reason.SFU_BANNED
    NOT_IN_SCHOOL = Reason.SFU_NOT_IN_SCHOOL
    REMOVED = Reason.SFU_REMOVED

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Refusal.NOT_IN_DIRECTORY: "Only accounts of the school's directory may join calls",
    Refusal.NO_CALLS_HERE: (
        "Calls are held in lessons, parents' meetings, broadcasts and direct chats of two only"
    ),
    Refusal.NOT_JOINED: "Join the room before joining its call",
    Refusal.BANNED: "You are banned from this room",
    Refusal.NOT_IN_SCHOOL: "This broadcast is for another school",
    Refusal.REMOVED: "The teacher removed you from this call",
}


@attrs.frozen
class Facts:
    """What the directory and the room say about one caller and one room."""

    room_kind: RoomKind | None  # None: a room the platform does not own
    membership: str | None  # the caller's m.room.member membership, None if never a member
    linked: bool  # the account is linked to a person of the directory
    roles: frozenset[Role] = frozenset()
    teaches_room_class: bool = False  # lesson: the caller teaches the room's class
    attends_room_class: bool = False  # lesson: the caller is a pupil of the room's class
    guards_room_class: bool = False  # meeting: a child of the caller is in the room's class
    # Not provisioned: the room has exactly two joined members, the caller and another
    # account of the directory.
    direct_chat: bool = False
    in_school: bool = False  # the caller belongs to the org the room (or its class) belongs to
    pupil_camera_allowed: bool = False  # lesson: the teacher let pupils turn their cameras on


@attrs.frozen
class Grant:
    """What the token allows: LiveKit's `video` grant, less the room name."""

    can_publish: bool
    can_subscribe: bool = True
    can_publish_sources: tuple[str, ...] = ()
    # Told of nobody and nobody is told of them: a broadcast's viewers, hundreds of them, who
    # only watch (and may so be sent to an edge, `sfu.authservice.sfu_url_for`).
    hidden: bool = False
    # LiveKit's `roomAdmin`: may moderate others (mute, remove, allow a pupil's camera).
    room_admin: bool = False

    @classmethod
    def publisher(cls, *sources: str, room_admin: bool = False) -> Grant:
        return cls(
            can_publish=True,
            can_publish_sources=tuple(s for s in SOURCES if s in sources),
            room_admin=room_admin,
        )

    @classmethod
    def viewer(cls, *, hidden: bool = False) -> Grant:
        return cls(can_publish=False, hidden=hidden)


def decide(facts: Facts) -> Grant | Refusal:
    """The grant for these facts, or why there is none."""
    if not facts.linked:
        return Refusal.NOT_IN_DIRECTORY
    if facts.membership == "ban":
        return Refusal.BANNED
    if facts.room_kind is RoomKind.LESSON:
        return _lesson(facts)
    if facts.room_kind is RoomKind.BROADCAST:
        return _broadcast(facts)
    if facts.room_kind is RoomKind.MEETING:
        return _meeting(facts)
    if facts.room_kind is None and facts.direct_chat and facts.membership == "join":
        return Grant.publisher(CAMERA, MICROPHONE, SCREEN_SHARE)
    return Refusal.NO_CALLS_HERE


def _lesson(facts: Facts) -> Grant | Refusal:
    if facts.membership != "join":
        return Refusal.NOT_JOINED
    if facts.teaches_room_class:
        return Grant.publisher(CAMERA, MICROPHONE, SCREEN_SHARE, room_admin=True)
    if facts.attends_room_class:
        if facts.pupil_camera_allowed:
            return Grant.publisher(CAMERA, MICROPHONE)
        return Grant.publisher(MICROPHONE)
    return Grant.viewer()


def _meeting(facts: Facts) -> Grant | Refusal:
    if facts.membership != "join":
        return Refusal.NOT_JOINED
    if facts.teaches_room_class:
        return Grant.publisher(CAMERA, MICROPHONE, SCREEN_SHARE, room_admin=True)
    if Role.STAFF in facts.roles:
        return Grant.publisher(CAMERA, MICROPHONE, SCREEN_SHARE)
    if facts.guards_room_class:
        return Grant.publisher(CAMERA, MICROPHONE)
    return Grant.viewer()


def _broadcast(facts: Facts) -> Grant | Refusal:
    if not facts.in_school:
        return Refusal.NOT_IN_SCHOOL
    if Role.STAFF in facts.roles and facts.membership == "join":
        return Grant.publisher(CAMERA, MICROPHONE, SCREEN_SHARE, room_admin=True)
    return Grant.viewer(hidden=True)


def facts_from_json(raw: object, pupil_camera_allowed: bool = False) -> Facts:
    """Facts from the module's admin API `rtc-facts` answer; anything malformed refuses.

    A malformed answer gives the facts of an unlinked caller, so a directory that answers
    nonsense lets nobody in rather than everybody.
    """
    if not isinstance(raw, dict):
        return Facts(room_kind=None, membership=None, linked=False)
    kind = _enum_or_none(RoomKind, raw.get("room_kind"))
    membership = raw.get("membership") if isinstance(raw.get("membership"), str) else None
    member = raw.get("member")
    if not isinstance(member, dict):
        return Facts(room_kind=kind, membership=membership, linked=False)
    scope = raw.get("room_scope")
    if not isinstance(scope, str):  # not a provisioned room: nothing to belong to
        return Facts(
            room_kind=None,
            membership=membership,
            linked=True,
            direct_chat=raw.get("direct_chat") is True,
        )
    roles = frozenset(
        r for r in (_enum_or_none(Role, v) for v in _strings(member.get("roles"))) if r
    )
    return Facts(
        room_kind=kind,
        membership=membership,
        linked=True,
        roles=roles,
        teaches_room_class=scope in _strings(member.get("teacher_class_ids")),
        attends_room_class=scope in _strings(member.get("student_class_ids")),
        guards_room_class=scope in _strings(member.get("child_class_ids")),
        # Broadcasts belong to a school: its people (guardians too) list it among their orgs.
        in_school=scope in _strings(member.get("org_ids")),
        pupil_camera_allowed=pupil_camera_allowed,
    )


E = TypeVar("E", bound=enum.Enum)


def _enum_or_none(cls: type[E], value: object) -> E | None:
    try:
        return cls(value)
    except ValueError:
        return None


def _strings(value: object) -> frozenset[str]:
    if not isinstance(value, list):
        return frozenset()
    return frozenset(v for v in value if isinstance(v, str))
