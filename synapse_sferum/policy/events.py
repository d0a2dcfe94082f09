"""Rules for state in rooms: what the platform alone may set, and the names members carry.

In a provisioned room the platform owns the room's shape (docs/rooms-and-rules.md «Who may change
what»); elsewhere users shape their own rooms within the «Closed» rules."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from sferum_shared import matrix
from sferum_shared.rooms import RoomKey
from sferum_shared.vocabulary import EventType, Reason
from synapse_sferum.policy.decision import ALLOW, Decision, refuse
from synapse_sferum.policy.names import wears_badge


@attrs.frozen
class ProvisionedRoom:
    """A room that carries the kind event, with the members the directory wants in it now."""

    key: RoomKey
    desired_members: frozenset[str]  # Matrix user IDs

    @property
    def admits_partners(self) -> bool:
        """Only the federating room (the staff room) takes in partner schools' staff."""
        return self.key.kind.federates


# State that decides who is in a provisioned room, who may do what there, and what it is.
# Widgets too: a widget's page may ask members' clients for OpenID tokens (the call page does),
# so only the platform places pages there.
PLATFORM_STATE = frozenset(
    {
        matrix.POWER_LEVELS,
        matrix.JOIN_RULES,
        matrix.HISTORY_VISIBILITY,
        matrix.ENCRYPTION,
        matrix.SERVER_ACL,
        matrix.TOMBSTONE,
        matrix.SPACE_CHILD,
        matrix.SPACE_PARENT,
        matrix.WIDGETS,
        EventType.ROOM_KIND,
    }
)


def may_send_state(
    event_type: str,
    content: Mapping[str, object],
    *,
    sender: str,
    state_key: str,
    is_platform: bool,
    room: ProvisionedRoom | None,
    allow_encrypted_dms: bool,
) -> Decision:
    """May this state event be sent? `room` is None for rooms the platform does not provision.

    The kind event is the platform's in every room, or anyone could make a room look provisioned.
    Encryption of users' own rooms follows the school's setting, also after creation; a
    provisioned room is never encrypted, not even by the platform (the school moderates it).
    A call membership is its owner's own: nobody announces another person in a call, or ends
    their membership (power levels let every member of a call room send the type).
    """
    if room is not None and event_type == matrix.ENCRYPTION:
        return refuse(Reason.PROVISIONED_UNENCRYPTED)
    if is_platform:
        return ALLOW
    if event_type == EventType.ROOM_KIND or (room is not None and event_type in PLATFORM_STATE):
        return refuse(Reason.PROTECTED_STATE)
    if event_type == matrix.CALL_MEMBER and not owns_call_membership(sender, state_key):
        return refuse(Reason.CALL_MEMBERSHIP_NOT_OWN)
    if _opens_room(event_type, content):
        return refuse(Reason.PUBLIC_ROOM)
    if event_type == matrix.NAME and wears_badge(content.get("name")):
        return refuse(Reason.BADGE_RESERVED)
    if event_type == matrix.ENCRYPTION and not allow_encrypted_dms:
        return refuse(Reason.ENCRYPTION_NOT_ALLOWED)
    return ALLOW


def owns_call_membership(sender: str, state_key: str) -> bool:
    """Whether a call membership's state key names its sender: `_@user:server_DEVICE` (the
    form the apps send), `@user:server_DEVICE`, or the user ID alone (older clients).

    Server names cannot hold `_`, so `@bob:school.test_…` is Bob's whoever else exists.
    """
    return (
        state_key == sender
        or state_key.startswith(f"{sender}_")
        or state_key.startswith(f"_{sender}_")
    )


def may_redact_state(
    target_type: str, *, is_platform: bool, room: ProvisionedRoom | None
) -> Decision:
    """May a redaction empty this piece of the room's current state?

    A redaction is no state event, but it strips the state it hits down to almost nothing: a
    room's kind, name, space links, widgets, or a member's event. So in a provisioned room only
    the platform redacts current state (teachers still redact messages, and users in their own
    rooms whatever they could change), and the kind event is the platform's in every room.
    """
    if is_platform:
        return ALLOW
    if target_type == EventType.ROOM_KIND or room is not None:
        return refuse(Reason.PROTECTED_STATE)
    return ALLOW


def _opens_room(event_type: str, content: Mapping[str, object]) -> bool:
    """Would this state let people nobody invited join, or read along without joining?"""
    if event_type == matrix.JOIN_RULES:
        return content.get("join_rule") != matrix.INVITE_JOIN_RULE
    if event_type == matrix.GUEST_ACCESS:
        return content.get("guest_access") == matrix.GUEST_CAN_JOIN
    if event_type == matrix.HISTORY_VISIBILITY:
        return content.get("history_visibility") == matrix.WORLD_READABLE
    return False
