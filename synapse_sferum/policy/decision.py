"""The answer of every rule: allowed, or refused with a reason a client can act on.

The glue turns a refusal into Synapse's `(Codes.FORBIDDEN, {Key.REASON: reason})`, so every refusal
reaches the user as `M_FORBIDDEN` with a stable, namespaced reason (DESIGN §4), never a 500.
"""

from __future__ import annotations

import enum

import attrs


class Reason(enum.StrEnum):
    """Why something was refused. The values are API: clients may match on them."""

    UNLINKED_SENDER = "ru.sferum.sender_not_in_directory"
    UNLINKED_TARGET = "ru.sferum.target_not_in_directory"
    OTHER_SCHOOL = "ru.sferum.other_school"
    MINOR_PROTECTED = "ru.sferum.minor_protected"
    NOT_RELATED = "ru.sferum.not_related"
    PUBLIC_ROOM = "ru.sferum.no_public_rooms"
    NOT_PUBLISHED = "ru.sferum.no_published_rooms"
    DM_ONLY = "ru.sferum.dm_only"
    DM_THIRD_PERSON = "ru.sferum.dm_third_person"
    ENCRYPTION_NOT_ALLOWED = "ru.sferum.encryption_not_allowed"
    PROVISIONED_UNENCRYPTED = "ru.sferum.provisioned_room_unencrypted"
    RESERVED_ALIAS = "ru.sferum.reserved_alias"
    ALIAS_NOT_ALLOWED = "ru.sferum.alias_not_allowed"
    PROTECTED_STATE = "ru.sferum.protected_state"
    MANAGED_MEMBERSHIP = "ru.sferum.managed_membership"
    NOT_ROOM_MEMBER = "ru.sferum.not_room_member"
    NO_KNOCKING = "ru.sferum.no_knocking"
    REMOTE_NOT_ALLOWED = "ru.sferum.remote_not_allowed"
    SERVER_NOT_LISTED = "ru.sferum.server_not_listed"
    ROOM_NOT_FEDERATED = "ru.sferum.room_not_federated"
    SHARED_WITH_PARTNERS = "ru.sferum.room_shared_with_partners"
    BADGE_RESERVED = "ru.sferum.badge_reserved"
    CALL_MEMBERSHIP_NOT_OWN = "ru.sferum.call_membership_not_own"


@attrs.frozen
class Decision:
    """`reason` is empty exactly when `allowed` is true."""

    allowed: bool
    reason: str = ""


ALLOW = Decision(allowed=True)


def refuse(reason: Reason) -> Decision:
    # Store the plain string: a Decision is data that crosses into Synapse's JSON error bodies.
    return Decision(allowed=False, reason=reason.value)
