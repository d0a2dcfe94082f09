"""Who may create rooms and aliases, and what kind (docs/rooms-and-rules.md «Closed», «Who may
create rooms»).

Only the shape of the room is judged here. The invitees of a new room are judged one by one by
`may_invite`, because Synapse asks about every invite of a /createRoom as it sends it.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from sferum_shared import matrix
from sferum_shared.model import Member
from sferum_shared.rooms import is_reserved_alias
from sferum_shared.vocabulary import Reason
from synapse_sferum.policy.decision import ALLOW, Decision, refuse
from synapse_sferum.policy.names import wears_badge


@attrs.frozen
class CreateRoomRequest:
    """What the rules need from a /createRoom body; the defaults are the body's absent fields."""

    is_direct: bool = False
    invitees: tuple[str, ...] = ()
    preset: str | None = None
    visibility: str | None = None
    join_rule: str | None = None  # from initial_state m.room.join_rules
    guest_access: str | None = None  # from initial_state m.room.guest_access
    history_visibility: str | None = None  # from initial_state m.room.history_visibility
    encrypted: bool = False  # initial_state carries m.room.encryption
    alias_localpart: str | None = None  # room_alias_name
    names: tuple[str, ...] = ()  # the body's `name` and any m.room.name in initial_state

    @property
    def opens_room(self) -> bool:
        """Would the room be listed, joinable or readable by people nobody invited?"""
        return (
            self.visibility == matrix.PUBLIC_VISIBILITY
            or self.preset == matrix.PUBLIC_PRESET
            or (self.join_rule is not None and self.join_rule != matrix.INVITE_JOIN_RULE)
            or self.guest_access == matrix.GUEST_CAN_JOIN
            or self.history_visibility == matrix.WORLD_READABLE
        )

    @property
    def invitee_count(self) -> int:
        return len(set(self.invitees))


def may_create_room(
    creator: Member | None, request: CreateRoomRequest, *, allow_encrypted_dms: bool
) -> Decision:
    """Teachers and staff create groups and DMs; pupils and guardians create DMs only.

    `allow_encrypted_dms` (the school's `rules.allow_encrypted_dms`) governs every room a user
    creates, groups included: it is the school's answer to "may we not be able to read private
    conversations?", and a teacher's group is as private as a DM. Provisioned rooms are never
    encrypted (see `may_send_state`); pupils and guardians cannot create groups at all.
    """
    if creator is None:
        return refuse(Reason.UNLINKED_SENDER)
    if request.opens_room:
        return refuse(Reason.PUBLIC_ROOM)
    if any(wears_badge(name) for name in request.names):
        return refuse(Reason.BADGE_RESERVED)
    if request.alias_localpart is not None:
        alias = may_create_alias(creator, request.alias_localpart)
        if not alias.allowed:
            return alias
    if request.is_direct and request.invitee_count > 1:
        return refuse(Reason.DM_THIRD_PERSON)
    if not creator.is_school_adult and not (request.is_direct and request.invitee_count == 1):
        return refuse(Reason.DM_ONLY)
    if request.encrypted and not allow_encrypted_dms:
        return refuse(Reason.ENCRYPTION_NOT_ALLOWED)
    return ALLOW


def room_may_federate(local_people: Iterable[Member | None], has_remote_invitee: bool) -> bool:
    """Should a user's new room federate (`m.federate`, fixed for the room's life)?

    Only a room made for a partner school: created with a remote invitee, and with nobody but
    our teachers and staff on our side. Every other room stays on this server, so that pupils and
    families may be invited into it later without ever meeting another server's users.
    """
    return has_remote_invitee and all(p is not None and p.is_school_adult for p in local_people)


def may_create_alias(creator: Member | None, localpart: str) -> Decision:
    """Aliases name rooms for everyone on the server: the school's adults give them, never in the
    platform's own scheme (`#class-…`, `#diary-…`, …), which the bridge and clients trust."""
    if creator is None:
        return refuse(Reason.UNLINKED_SENDER)
    if is_reserved_alias(localpart):
        return refuse(Reason.RESERVED_ALIAS)
    if not creator.is_school_adult:
        return refuse(Reason.ALIAS_NOT_ALLOWED)
    return ALLOW


def may_publish_room() -> Decision:
    """Nothing goes into the room directory: a closed school has no public rooms."""
    return refuse(Reason.NOT_PUBLISHED)
