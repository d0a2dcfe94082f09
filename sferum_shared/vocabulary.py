"""Every `ru.sferum.*` name the platform puts on the wire, spelled once.

These are API: clients, bots and the platform's own parts match on them, so a value never
changes once released. Event types and account-data types, keys inside event content, errors
and tokens, widget IDs, and the reasons of every refusal each have one namespace here.

Names that go into Synapse's own calls (event types, state keys, content keys) are plain `str`
constants: Synapse's state lookups missed an enum member as the event type (a StrEnum equals
its value, yet `get_room_state` answered nothing for it), so only reasons, which end as text in
an error's JSON, are a StrEnum.
"""

from __future__ import annotations

import enum
from typing import Final


class EventType:
    """Types of state events and account data the platform defines."""

    # Protected state: {"kind", "org", "class"[, "person"]}.
    ROOM_KIND: Final = "ru.sferum.room"
    # A teacher's account data: the working hours and the automatic reply.
    QUIET_HOURS: Final = "ru.sferum.quiet_hours"


class Key:
    """Keys the platform adds inside others' JSON: event content, errors, tokens."""

    # The namespaced reason of every refusal (a `Reason`), in the error's JSON.
    REASON: Final = "ru.sferum.reason"
    # In events' `unsigned`: the role the server asserts for the sender.
    SENDER_ROLE: Final = "ru.sferum.sender_role"
    # In `m.room.create` of every direct chat.
    DIRECT: Final = "ru.sferum.direct"
    # In a school news post's copy: the original's event ID.
    MIRROR_OF: Final = "ru.sferum.mirror_of"
    # A pinned post the platform copied into an upgraded room's replacement: {"room_id",
    # "event_id", "sender"} of the original in the old room.
    PIN_OF: Final = "ru.sferum.pin_of"
    # The platform's summary of an ended poll: {"poll", "answers": {id: votes}, "voters"}.
    POLL_RESULT: Final = "ru.sferum.poll_result"
    # The staff room's notice of a reported message: {"report_id", "room_id", "event_id",
    # "reporter", "sender"}.
    REPORT: Final = "ru.sferum.report"
    # Marks quiet hours' automatic notice.
    AUTO_REPLY: Final = "ru.sferum.auto_reply"
    # A refused roster's list of {file, line, column, message}.
    PROBLEMS: Final = "ru.sferum.problems"
    # {"key", "hash"} in every message the diary bridge sends.
    DIARY_MARKER: Final = "ru.sferum.diary"
    # The SFU token's Matrix room, user and device.
    SESSION_CLAIM: Final = "ru.sferum.session"
    # The SFU token's MSC4140 delegation (a delayed leave event).
    DELAYED_LEAVE_CLAIM: Final = "ru.sferum.delayed_leave"


class WidgetId:
    """State keys of the platform's `im.vector.modular.widgets`: one of each per room."""

    DIARY: Final = "ru.sferum.diary"
    CALL: Final = "ru.sferum.call"
    INVITES: Final = "ru.sferum.invites"


class PushRuleId:
    # The override rule that silences a teacher's phone out of hours.
    QUIET_HOURS: Final = "ru.sferum.quiet_hours"


class Reason(enum.StrEnum):
    """Why something was refused, under `Key.REASON` in the error. Clients may match on it."""

    # Rooms, messages and invites (`synapse_sferum.policy`).
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
    POLL_NOT_ALLOWED = "ru.sferum.poll_not_allowed"  # this room's kind: not for this role
    POLL_NOT_OWN = "ru.sferum.poll_not_own"  # only its author or a moderator ends a poll
    POLL_MIRRORED = "ru.sferum.poll_mirrored"  # a school news poll ends in the school news
    FILE_TYPE_REFUSED = "ru.sferum.file_type_refused"  # programs and scripts
    AVATAR_NOT_OWN = "ru.sferum.avatar_not_own"  # a file of this server someone else uploaded
    AVATAR_NOT_LOCAL = "ru.sferum.avatar_not_local"  # another server's file, or no mxc URI
    # Accounts, linking codes and phones (`synapse_sferum.policy.identity`).
    PERSON_NOT_IN_DIRECTORY = "ru.sferum.person_not_in_directory"
    PERSON_DISABLED = "ru.sferum.person_disabled"
    TOO_YOUNG = "ru.sferum.too_young"
    PERSON_HAS_ACCOUNT = "ru.sferum.person_has_account"
    LINK_CODE_UNKNOWN = "ru.sferum.link_code_unknown"
    LINK_CODE_USED = "ru.sferum.link_code_used"
    LINK_CODE_EXPIRED = "ru.sferum.link_code_expired"
    PHONE_INVALID = "ru.sferum.phone_invalid"
    PHONE_IN_USE = "ru.sferum.phone_in_use"
    PHONE_OF_GUARDIAN = "ru.sferum.phone_of_guardian"
    # Single sign-on (`synapse_sferum.sso`).
    SSO_CLAIM_MISSING = "ru.sferum.sso_claim_missing"
    SSO_PHONE_AMBIGUOUS = "ru.sferum.sso_phone_ambiguous"
    SSO_MODULE_NOT_LOADED = "ru.sferum.sso_module_not_loaded"
    # SMS codes (`synapse_sferum.policy.phone`).
    SMS_SESSION_UNKNOWN = "ru.sferum.sms_session_unknown"
    SMS_CODE_WRONG = "ru.sferum.sms_code_wrong"
    SMS_CODE_EXPIRED = "ru.sferum.sms_code_expired"
    SMS_ATTEMPTS_EXHAUSTED = "ru.sferum.sms_attempts_exhausted"
    SMS_RATE_LIMITED = "ru.sferum.sms_rate_limited"
    SMS_SCHOOL_RATE_LIMITED = "ru.sferum.sms_school_rate_limited"
    # Calls (`sfu.grants`, `sfu.authservice`).
    SFU_NOT_IN_DIRECTORY = "ru.sferum.sfu_not_in_directory"  # unlinked or remote account
    SFU_NO_CALLS_IN_ROOM = "ru.sferum.sfu_no_calls_in_room"  # no lesson, meeting, broadcast, DM
    SFU_NOT_JOINED = "ru.sferum.sfu_not_joined"  # lesson, meeting: not a member of the room
    SFU_BANNED = "ru.sferum.sfu_banned"
    SFU_NOT_IN_SCHOOL = "ru.sferum.sfu_not_in_school"  # broadcast: of another school
    SFU_REMOVED = "ru.sferum.sfu_removed"  # the teacher removed the user from this call
    SFU_OTHER_SERVER = "ru.sferum.sfu_other_server"
    SFU_CLAIMED_USER_MISMATCH = "ru.sferum.sfu_claimed_user_mismatch"
    SFU_OPENID_REJECTED = "ru.sferum.sfu_openid_rejected"
    # Any refusal the rules did not mean: an unexpected error, refused closed.
    INTERNAL_ERROR = "ru.sferum.internal_error"
