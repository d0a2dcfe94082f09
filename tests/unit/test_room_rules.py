"""Room rules (docs/rooms-and-rules.md): creation, aliases, publishing, state, membership and
invites.

Every table row starts with its test id; `OK` means allowed, a Reason means refused for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from sferum_shared.model import Member, Role
from sferum_shared.rooms import RoomKey, RoomKind
from sferum_shared.vocabulary import EventType
from synapse_sferum.policy import (
    ALLOW,
    PLATFORM_STATE,
    CreateRoomRequest,
    Decision,
    ProvisionedRoom,
    Reason,
    expected_display_name,
    may_change_membership,
    may_create_alias,
    may_create_room,
    may_invite,
    may_join_room,
    may_publish_room,
    may_receive_remote_invite,
    may_redact_state,
    may_send_state,
    refuse,
    room_may_federate,
)

OK = None


def _expected(reason: Reason | None) -> Decision:
    return ALLOW if reason is OK else refuse(reason)


def _table(*rows: tuple[object, ...]) -> list[object]:
    return [pytest.param(*row[1:], id=str(row[0])) for row in rows]


SCHOOL = frozenset({"school-1"})
FIVE_A = frozenset({"5A"})
STUDENT, GUARDIAN, TEACHER, STAFF = (frozenset({role}) for role in Role)

PEOPLE: dict[str, Member | None] = {
    "teacher": Member("t", TEACHER, SCHOOL, teacher_class_ids=FIVE_A),
    "staff": Member("s", STAFF, SCHOOL),
    "teacher_guardian": Member("tg", TEACHER | GUARDIAN, SCHOOL),
    "student": Member("p", STUDENT, SCHOOL, student_class_ids=FIVE_A, is_minor=True),
    "classmate": Member("q", STUDENT, SCHOOL, student_class_ids=FIVE_A, is_minor=True),
    "guardian": Member("g", GUARDIAN, SCHOOL, child_ids=frozenset({"p"}), child_class_ids=FIVE_A),
    "unlinked": None,
}
ADULTS = ("teacher", "staff", "teacher_guardian")
FAMILIES = ("student", "guardian")

# -- creating rooms -------------------------------------------------------------------------------

DM = CreateRoomRequest(is_direct=True, invitees=("@other:s",))
GROUP = CreateRoomRequest(invitees=("@a:s", "@b:s"))
# Fields of a /createRoom body, by test id
PUBLIC: dict[str, dict[str, Any]] = {
    "visibility-public": {"visibility": "public"},
    "preset-public": {"preset": "public_chat"},
    "join-rule-public": {"join_rule": "public"},
    # Rules that let members of another room in, or let anyone knock, open a room as much.
    "join-rule-restricted": {"join_rule": "restricted"},
    "join-rule-knock": {"join_rule": "knock"},
    "join-rule-knock-restricted": {"join_rule": "knock_restricted"},
    "join-rule-missing": {"join_rule": ""},
    "join-rule-of-a-future-room-version": {"join_rule": "private_beta"},
    "guests-can-join": {"guest_access": "can_join"},
    "world-readable": {"history_visibility": "world_readable"},
}
CLOSED: dict[str, dict[str, Any]] = {
    "visibility-private": {"visibility": "private"},
    "preset-private": {"preset": "private_chat"},
    "preset-trusted": {"preset": "trusted_private_chat"},
    "join-rule-invite": {"join_rule": "invite"},
    "guests-forbidden": {"guest_access": "forbidden"},
    "history-shared": {"history_visibility": "shared"},
}

# (id, creator, request, school allows encryption, expected)
CREATE_CASES = _table(
    *((f"{who}-group", who, GROUP, False, OK) for who in ADULTS),
    *((f"{who}-dm", who, DM, False, OK) for who in ADULTS + FAMILIES),
    *((f"{who}-group", who, GROUP, False, Reason.DM_ONLY) for who in FAMILIES),
    *((f"{who}-room-alone", who, CreateRoomRequest(), False, Reason.DM_ONLY) for who in FAMILIES),
    ("unlinked-dm", "unlinked", DM, False, Reason.UNLINKED_SENDER),
    ("dm-with-nobody", "student", attrs.evolve(DM, invitees=()), False, Reason.DM_ONLY),
    ("dm-same-invitee-twice", "student", attrs.evolve(DM, invitees=("@o:s", "@o:s")), False, OK),
    *(
        (
            f"{who}-dm-with-two",
            who,
            attrs.evolve(DM, invitees=("@a:s", "@b:s")),
            False,
            Reason.DM_THIRD_PERSON,
        )
        for who in ("teacher", "student")
    ),
    # no public rooms, for anyone
    *(
        (f"{who}-{name}", who, attrs.evolve(room, **fields), False, Reason.PUBLIC_ROOM)
        for who, room in (("staff", GROUP), ("student", DM))
        for name, fields in PUBLIC.items()
    ),
    *(
        (f"teacher-{name}", "teacher", attrs.evolve(GROUP, **f), False, OK)
        for name, f in CLOSED.items()
    ),
    # encryption follows the school's setting, in DMs and groups alike
    *(
        (
            f"encrypted-{name}-school-allows-{allows}",
            who,
            attrs.evolve(room, encrypted=True),
            allows,
            OK if allows else Reason.ENCRYPTION_NOT_ALLOWED,
        )
        for who, room, name in (("student", DM, "dm"), ("teacher", GROUP, "group"))
        for allows in (False, True)
    ),
    # the teacher's badge is the server's: no room is named with it, by anyone
    *(
        (f"{who}-badge-{n}", who, attrs.evolve(room, names=(name,)), False, Reason.BADGE_RESERVED)
        for who, room in (("teacher", GROUP), ("student", DM))
        for n, name in enumerate(("Петров А. Н. 🎓", "👨‍🎓 Учитель", "🎓"))
    ),
    ("student-heart-emoji", "student", attrs.evolve(DM, names=("Мы ❤️",)), False, OK),
    # an alias in the request is judged as may_create_alias judges it
    ("teacher-alias", "teacher", attrs.evolve(GROUP, alias_localpart="chess"), False, OK),
    (
        "teacher-reserved-alias",
        "teacher",
        attrs.evolve(GROUP, alias_localpart="class-5a"),
        False,
        Reason.RESERVED_ALIAS,
    ),
    (
        "student-alias",
        "student",
        attrs.evolve(DM, alias_localpart="our-chat"),
        False,
        Reason.ALIAS_NOT_ALLOWED,
    ),
)


@pytest.mark.parametrize(("creator", "request_", "allow_encrypted", "expected"), CREATE_CASES)
def test_create_room(
    creator: str, request_: CreateRoomRequest, allow_encrypted: bool, expected: Reason | None
) -> None:
    decision = may_create_room(PEOPLE[creator], request_, allow_encrypted_dms=allow_encrypted)
    assert decision == _expected(expected)


# (id, creator, alias localpart, expected)
ALIAS_CASES = _table(
    ("teacher", "teacher", "chess-club", OK),
    ("staff", "staff", "open-day", OK),
    ("teacher-guardian", "teacher_guardian", "robotics", OK),
    ("news-alone-is-free", "teacher", "newsletter", OK),
    ("student", "student", "chess-club", Reason.ALIAS_NOT_ALLOWED),
    ("guardian", "guardian", "bake-sale", Reason.ALIAS_NOT_ALLOWED),
    ("guardian-reserved", "guardian", "parents-of-5a", Reason.RESERVED_ALIAS),
    ("unlinked", "unlinked", "chess-club", Reason.UNLINKED_SENDER),
    *(
        (
            f"reserved-{kind.value}",
            "staff",
            RoomKey(kind, "x").alias_localpart(),
            Reason.RESERVED_ALIAS,
        )
        for kind in RoomKind
    ),
)


@pytest.mark.parametrize(("creator", "localpart", "expected"), ALIAS_CASES)
def test_create_alias(creator: str, localpart: str, expected: Reason | None) -> None:
    assert may_create_alias(PEOPLE[creator], localpart) == _expected(expected)


def test_nothing_is_published() -> None:
    assert may_publish_room() == refuse(Reason.NOT_PUBLISHED)


# (id, our people in the new room, created with a remote invitee, federates)
FEDERATE_CASES = _table(
    ("adults-with-partner", ("teacher", "staff"), True, True),
    ("adults-alone", ("teacher", "staff"), False, False),  # stays local, may take pupils later
    ("with-a-pupil", ("teacher", "student"), True, False),
    ("with-a-parent", ("teacher", "guardian"), True, False),
    ("with-an-unlinked-account", ("teacher", "unlinked"), True, False),
)


@pytest.mark.parametrize(("local_people", "has_remote_invitee", "federates"), FEDERATE_CASES)
def test_room_may_federate(
    local_people: tuple[str, ...], has_remote_invitee: bool, federates: bool
) -> None:
    people = [PEOPLE[name] for name in local_people]
    assert room_may_federate(people, has_remote_invitee) is federates


# -- state ----------------------------------------------------------------------------------------

PUPIL, TEACHER_ID, STRANGER, BOT = "@p:s", "@t:s", "@x:s", "@sferum:s"
PARTNER = "@teacher:partner.example"

CLASS_CHAT = ProvisionedRoom(RoomKey(RoomKind.CLASS_CHAT, "5A"), frozenset({PUPIL, TEACHER_ID}))
STAFF_ROOM = ProvisionedRoom(RoomKey(RoomKind.STAFF, "school-1"), frozenset({TEACHER_ID}))
ROOMS: dict[str, ProvisionedRoom | None] = {
    "own-room": None,
    "class-chat": CLASS_CHAT,
    "staff-room": STAFF_ROOM,
}
PROVISIONED = ("class-chat", "staff-room")

PUBLIC_JOIN = ("m.room.join_rules", {"join_rule": "public"})
RESTRICTED_JOIN = (
    "m.room.join_rules",
    {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!news:s"}]},
)
KNOCK_JOIN = ("m.room.join_rules", {"join_rule": "knock"})
KNOCK_RESTRICTED_JOIN = ("m.room.join_rules", {"join_rule": "knock_restricted", "allow": []})
BADGE_NAME = ("m.room.name", {"name": "Петров Алексей Николаевич 🎓"})
INVITE_JOIN = ("m.room.join_rules", {"join_rule": "invite"})
GUESTS_JOIN = ("m.room.guest_access", {"guest_access": "can_join"})
GUESTS_FORBIDDEN = ("m.room.guest_access", {"guest_access": "forbidden"})
WORLD_READABLE = ("m.room.history_visibility", {"history_visibility": "world_readable"})
SHARED_HISTORY = ("m.room.history_visibility", {"history_visibility": "shared"})
ENCRYPTION = ("m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})
KIND = (EventType.ROOM_KIND, {"kind": "class", "org": "school-1", "class": "5A"})
NAME = ("m.room.name", {"name": "Кружок"})
TOPIC = ("m.room.topic", {"topic": "Шахматы"})
LEVELS = ("m.room.power_levels", {"users": {TEACHER_ID: 100}})
WIDGET = ("im.vector.modular.widgets", {"type": "m.custom", "url": "https://example.org/"})
UNENCRYPTED_PLATFORM_STATE = sorted(PLATFORM_STATE - {ENCRYPTION[0]})

USER, PLATFORM = False, True

# (id, sent by the platform, room, event, school allows encryption, expected)
STATE_CASES = _table(
    # the kind event is the platform's in every room
    *((f"user-kind-{room}", USER, room, KIND, False, Reason.PROTECTED_STATE) for room in ROOMS),
    *((f"platform-kind-{room}", PLATFORM, room, KIND, False, OK) for room in ROOMS),
    # users' own rooms stay closed, and otherwise are theirs
    ("user-public", USER, "own-room", PUBLIC_JOIN, False, Reason.PUBLIC_ROOM),
    ("user-guests", USER, "own-room", GUESTS_JOIN, False, Reason.PUBLIC_ROOM),
    ("user-restricted", USER, "own-room", RESTRICTED_JOIN, False, Reason.PUBLIC_ROOM),
    ("user-knock", USER, "own-room", KNOCK_JOIN, False, Reason.PUBLIC_ROOM),
    ("user-knock-restricted", USER, "own-room", KNOCK_RESTRICTED_JOIN, False, Reason.PUBLIC_ROOM),
    ("user-badge-name", USER, "own-room", BADGE_NAME, False, Reason.BADGE_RESERVED),
    ("user-badge-name-class-chat", USER, "class-chat", BADGE_NAME, False, Reason.BADGE_RESERVED),
    ("user-invite-only", USER, "own-room", INVITE_JOIN, False, OK),
    ("user-no-guests", USER, "own-room", GUESTS_FORBIDDEN, False, OK),
    ("user-world-readable", USER, "own-room", WORLD_READABLE, False, Reason.PUBLIC_ROOM),
    ("user-shared-history", USER, "own-room", SHARED_HISTORY, False, OK),
    ("user-name", USER, "own-room", NAME, False, OK),
    ("user-levels", USER, "own-room", LEVELS, False, OK),
    ("user-widget", USER, "own-room", WIDGET, False, OK),
    ("user-encrypts", USER, "own-room", ENCRYPTION, False, Reason.ENCRYPTION_NOT_ALLOWED),
    ("user-encrypts-school-allows", USER, "own-room", ENCRYPTION, True, OK),
    ("platform-public", PLATFORM, "own-room", PUBLIC_JOIN, False, OK),
    # provisioned rooms: the platform's state is the platform's
    *(
        (f"user-{event_type}-{room}", USER, room, (event_type, {}), False, Reason.PROTECTED_STATE)
        for room in PROVISIONED
        for event_type in UNENCRYPTED_PLATFORM_STATE
    ),
    *(
        (f"platform-{event_type}", PLATFORM, "class-chat", (event_type, {}), False, OK)
        for event_type in UNENCRYPTED_PLATFORM_STATE
    ),
    # a widget's page may ask for members' OpenID tokens: only the platform's pages, there
    ("user-widget-class-chat", USER, "class-chat", WIDGET, False, Reason.PROTECTED_STATE),
    ("platform-widget-class-chat", PLATFORM, "class-chat", WIDGET, False, OK),
    ("user-name-left-to-power-levels", USER, "class-chat", NAME, False, OK),
    ("user-topic-left-to-power-levels", USER, "class-chat", TOPIC, False, OK),
    # provisioned rooms stay unencrypted, whoever asks and whatever the school allows
    *(
        (
            f"encrypt-{room}-platform-{who}",
            who,
            room,
            ENCRYPTION,
            True,
            Reason.PROVISIONED_UNENCRYPTED,
        )
        for who in (USER, PLATFORM)
        for room in PROVISIONED
    ),
)


@pytest.mark.parametrize(
    ("is_platform", "room", "event", "allow_encrypted", "expected"), STATE_CASES
)
def test_send_state(
    is_platform: bool,
    room: str,
    event: tuple[str, Mapping[str, object]],
    allow_encrypted: bool,
    expected: Reason | None,
) -> None:
    event_type, content = event
    decision = may_send_state(
        event_type,
        content,
        sender=TEACHER_ID,
        state_key="",
        is_platform=is_platform,
        room=ROOMS[room],
        allow_encrypted_dms=allow_encrypted,
    )
    assert decision == _expected(expected)


# -- membership -----------------------------------------------------------------------------------

MANAGED = Reason.MANAGED_MEMBERSHIP
NOT_MEMBER = Reason.NOT_ROOM_MEMBER

# (id, sender, target, membership, room, previous membership, expected)
MEMBERSHIP_CASES = _table(
    # users' own rooms: left to Synapse, and invites to may_invite
    ("own-invite", TEACHER_ID, STRANGER, "invite", "own-room", None, OK),
    ("own-kick", TEACHER_ID, PUPIL, "leave", "own-room", "join", OK),
    ("own-ban", TEACHER_ID, PUPIL, "ban", "own-room", "join", OK),
    ("own-join", PUPIL, PUPIL, "join", "own-room", "invite", OK),
    # knocking is refused everywhere
    *(
        (f"knock-{room}", STRANGER, STRANGER, "knock", room, None, Reason.NO_KNOCKING)
        for room in ROOMS
    ),
    # provisioned rooms follow the directory
    ("desired-joins", PUPIL, PUPIL, "join", "class-chat", "invite", OK),
    ("desired-joins-uninvited", PUPIL, PUPIL, "join", "class-chat", None, OK),
    ("stranger-joins", STRANGER, STRANGER, "join", "class-chat", None, NOT_MEMBER),
    ("stranger-stale-invite", STRANGER, STRANGER, "join", "class-chat", "invite", NOT_MEMBER),
    ("desired-leaves", PUPIL, PUPIL, "leave", "class-chat", "join", MANAGED),
    ("desired-rejects-invite", PUPIL, PUPIL, "leave", "class-chat", "invite", MANAGED),
    ("undesired-leaves", STRANGER, STRANGER, "leave", "class-chat", "join", OK),
    ("user-invites", TEACHER_ID, STRANGER, "invite", "class-chat", None, MANAGED),
    ("user-kicks", TEACHER_ID, PUPIL, "leave", "class-chat", "join", MANAGED),
    ("user-kicks-undesired", TEACHER_ID, STRANGER, "leave", "class-chat", "join", MANAGED),
    ("user-bans", TEACHER_ID, PUPIL, "ban", "class-chat", "join", MANAGED),
    ("platform-invites", BOT, PUPIL, "invite", "class-chat", None, OK),
    ("platform-kicks", BOT, STRANGER, "leave", "class-chat", "join", OK),
    ("platform-bans", BOT, STRANGER, "ban", "class-chat", "join", OK),
    # the staff room takes in the partners that may_invite let through
    ("staff-room-invite", TEACHER_ID, PARTNER, "invite", "staff-room", None, OK),
    ("partner-joins", PARTNER, PARTNER, "join", "staff-room", "invite", OK),
    ("partner-joins-uninvited", PARTNER, PARTNER, "join", "staff-room", None, NOT_MEMBER),
    ("partner-leaves", PARTNER, PARTNER, "leave", "staff-room", "join", OK),
    ("teacher-kicks-partner", TEACHER_ID, PARTNER, "leave", "staff-room", "join", MANAGED),
)


@pytest.mark.parametrize(
    ("sender", "target", "membership", "room", "prev", "expected"), MEMBERSHIP_CASES
)
def test_change_membership(
    sender: str, target: str, membership: str, room: str, prev: str | None, expected: Reason | None
) -> None:
    decision = may_change_membership(
        sender,
        target,
        membership,
        is_platform=sender == BOT,
        room=ROOMS[room],
        prev_membership=prev,
    )
    assert decision == _expected(expected)


# (id, who, user ID, room, expected)
JOIN_CASES = _table(
    ("own-room", "student", PUPIL, "own-room", OK),
    ("unverified-account", "unlinked", STRANGER, "own-room", Reason.UNLINKED_SENDER),
    ("desired", "student", PUPIL, "class-chat", OK),
    ("desired-staff-room", "teacher", TEACHER_ID, "staff-room", OK),
    ("not-desired", "guardian", STRANGER, "class-chat", NOT_MEMBER),
    ("not-desired-staff-room", "guardian", STRANGER, "staff-room", NOT_MEMBER),
)


@pytest.mark.parametrize(("who", "user_id", "room", "expected"), JOIN_CASES)
def test_join_room(who: str, user_id: str, room: str, expected: Reason | None) -> None:
    assert may_join_room(PEOPLE[who], user_id, ROOMS[room]) == _expected(expected)


OTHER_CLASS_GUARDIAN = Member(
    "og", GUARDIAN, SCHOOL, child_ids=frozenset({"x"}), child_class_ids=frozenset({"6B"})
)

# (id, who, members of a user's own room, invited, expected): joining without an invite is
# contact with everyone in the room, whatever join rule let the joiner in.
UNINVITED_JOIN_CASES = _table(
    ("classmates-room", "student", [PEOPLE["classmate"]], False, OK),
    ("another-class's-guardian", "student", [OTHER_CLASS_GUARDIAN], False, Reason.NOT_RELATED),
    ("one-stranger-among-friends", "student",
     [PEOPLE["classmate"], OTHER_CLASS_GUARDIAN], False, Reason.NOT_RELATED),
    ("remote-member", "student", [None], False, Reason.UNLINKED_TARGET),
    ("empty-room", "student", [], False, OK),
    ("guardian-into-a-pupils-room", "guardian", [PEOPLE["classmate"]], False,
     Reason.MINOR_PROTECTED),
    ("invited-is-judged-at-the-invite", "student", [OTHER_CLASS_GUARDIAN], True, OK),
)  # fmt: skip


@pytest.mark.parametrize(("who", "members", "invited", "expected"), UNINVITED_JOIN_CASES)
def test_join_without_an_invite(
    who: str, members: list[Member | None], invited: bool, expected: Reason | None
) -> None:
    decision = may_join_room(PEOPLE[who], "@x:s", None, invited=invited, members=members)
    assert decision == _expected(expected)


# (id, redacted by the platform, the redacted state's type, room, expected)
REDACT_CASES = _table(
    *(
        (f"user-{kind}-{room}", USER, kind, room, Reason.PROTECTED_STATE)
        for room in PROVISIONED
        for kind in (EventType.ROOM_KIND, "m.room.name", "m.space.parent", "m.space.child",
                     "im.vector.modular.widgets", "m.room.member", "m.room.power_levels")
    ),
    ("user-kind-own-room", USER, EventType.ROOM_KIND, "own-room", Reason.PROTECTED_STATE),
    ("user-name-own-room", USER, "m.room.name", "own-room", OK),
    ("user-member-own-room", USER, "m.room.member", "own-room", OK),
    ("platform-name-class-chat", PLATFORM, "m.room.name", "class-chat", OK),
)  # fmt: skip


@pytest.mark.parametrize(("is_platform", "target", "room", "expected"), REDACT_CASES)
def test_redact_state(is_platform: bool, target: str, room: str, expected: Reason | None) -> None:
    decision = may_redact_state(target, is_platform=is_platform, room=ROOMS[room])
    assert decision == _expected(expected)


# -- invites --------------------------------------------------------------------------------------

_INVITE_FACTS: dict[str, object] = {
    "inviter_is_platform": False,
    "invitee_is_remote": False,
    "invitee_server_listed": False,
    "room": None,
    "room_is_direct": False,
    "room_federates": False,
    "room_member_count": 1,
    "invitee_already_member": False,
}
LISTED_PARTNER = {"invitee_is_remote": True, "invitee_server_listed": True}
SHARED = {"room_federates": True}
DM_OF_TWO = {"room_is_direct": True, "room_member_count": 2}

# (id, inviter, invitee (None: remote), facts that differ from _INVITE_FACTS, expected)
INVITE_CASES = _table(
    ("platform", "unlinked", "student", {"inviter_is_platform": True, "room": CLASS_CHAT}, OK),
    # users' own rooms: may_contact decides
    ("teacher-invites-pupil", "teacher", "student", {}, OK),
    ("pupil-invites-classmate", "student", "classmate", {}, OK),
    ("pupil-invites-stranger", "student", "teacher_guardian", {}, Reason.NOT_RELATED),
    ("parent-invites-other-minor", "guardian", "classmate", {}, Reason.MINOR_PROTECTED),
    ("unlinked-inviter", "unlinked", "student", {}, Reason.UNLINKED_SENDER),
    ("unlinked-invitee", "teacher", "unlinked", {}, Reason.UNLINKED_TARGET),
    # DMs take no third person
    ("dm-second-person", "student", "classmate", {"room_is_direct": True}, OK),
    # the platform's bot, for chat commands: teachers and staff only, never as a DM's third
    ("teacher-invites-bot", "teacher", "unlinked", {"invitee_is_platform": True}, OK),
    ("staff-invites-bot", "staff", "unlinked", {"invitee_is_platform": True}, OK),
    (
        "pupil-invites-bot",
        "student",
        "unlinked",
        {"invitee_is_platform": True},
        Reason.NOT_RELATED,
    ),
    (
        "parent-invites-bot",
        "guardian",
        "unlinked",
        {"invitee_is_platform": True},
        Reason.NOT_RELATED,
    ),
    (
        "bot-as-third-in-dm",
        "teacher",
        "unlinked",
        {**DM_OF_TWO, "invitee_is_platform": True},
        Reason.DM_THIRD_PERSON,
    ),
    (
        "bot-into-class-chat",
        "teacher",
        "unlinked",
        {"invitee_is_platform": True, "room": CLASS_CHAT},
        Reason.MANAGED_MEMBERSHIP,
    ),
    ("dm-third-person", "student", "classmate", DM_OF_TWO, Reason.DM_THIRD_PERSON),
    ("dm-third-person-by-teacher", "teacher", "staff", DM_OF_TWO, Reason.DM_THIRD_PERSON),
    (
        "dm-reinvite-member",
        "student",
        "classmate",
        {**DM_OF_TWO, "invitee_already_member": True},
        OK,
    ),
    # provisioned rooms are the platform's
    ("into-class-chat", "teacher", "student", {"room": CLASS_CHAT}, Reason.MANAGED_MEMBERSHIP),
    (
        "local-into-staff-room",
        "staff",
        "teacher",
        {"room": STAFF_ROOM, **SHARED},
        Reason.MANAGED_MEMBERSHIP,
    ),
    # partners: our school adults bring listed schools' staff into federating groups
    (
        "partner-into-staff-room",
        "teacher",
        None,
        {**LISTED_PARTNER, **SHARED, "room": STAFF_ROOM},
        OK,
    ),
    ("partner-into-group", "staff", None, {**LISTED_PARTNER, **SHARED}, OK),
    (
        "partner-into-class-chat",
        "teacher",
        None,
        {**LISTED_PARTNER, **SHARED, "room": CLASS_CHAT},
        Reason.MANAGED_MEMBERSHIP,
    ),
    (
        "partner-into-dm",
        "teacher",
        None,
        {**LISTED_PARTNER, **SHARED, "room_is_direct": True},
        Reason.REMOTE_NOT_ALLOWED,
    ),
    (
        "parent-invites-partner",
        "guardian",
        None,
        {**LISTED_PARTNER, **SHARED},
        Reason.REMOTE_NOT_ALLOWED,
    ),
    (
        "pupil-invites-partner",
        "student",
        None,
        {**LISTED_PARTNER, **SHARED},
        Reason.REMOTE_NOT_ALLOWED,
    ),
    (
        "unlinked-invites-partner",
        "unlinked",
        None,
        {**LISTED_PARTNER, **SHARED},
        Reason.UNLINKED_SENDER,
    ),
    (
        "unlisted-server",
        "teacher",
        None,
        {"invitee_is_remote": True, **SHARED},
        Reason.SERVER_NOT_LISTED,
    ),
    ("partner-into-local-group", "teacher", None, LISTED_PARTNER, Reason.ROOM_NOT_FEDERATED),
    # a federating group takes our school adults only
    ("adult-into-shared-group", "teacher", "staff", SHARED, OK),
    ("pupil-into-shared-group", "teacher", "student", SHARED, Reason.SHARED_WITH_PARTNERS),
    ("parent-into-shared-group", "teacher", "guardian", SHARED, Reason.SHARED_WITH_PARTNERS),
)


@pytest.mark.parametrize(("inviter", "invitee", "facts", "expected"), INVITE_CASES)
def test_invite(
    inviter: str, invitee: str | None, facts: dict[str, object], expected: Reason | None
) -> None:
    decision = may_invite(
        PEOPLE[inviter],
        None if invitee is None else PEOPLE[invitee],
        **{**_INVITE_FACTS, **facts},  # type: ignore[arg-type]
    )
    assert decision == _expected(expected)


# (id, our invitee, inviter's server listed, expected)
REMOTE_INVITE_CASES = _table(
    ("teacher", "teacher", True, OK),
    ("staff", "staff", True, OK),
    ("unlisted-server", "teacher", False, Reason.SERVER_NOT_LISTED),
    ("pupil", "student", True, Reason.REMOTE_NOT_ALLOWED),
    ("parent", "guardian", True, Reason.REMOTE_NOT_ALLOWED),
    ("unlinked", "unlinked", True, Reason.UNLINKED_TARGET),
)


@pytest.mark.parametrize(("invitee", "listed", "expected"), REMOTE_INVITE_CASES)
def test_receive_remote_invite(invitee: str, listed: bool, expected: Reason | None) -> None:
    assert may_receive_remote_invite(PEOPLE[invitee], listed) == _expected(expected)


# -- names and reasons ----------------------------------------------------------------------------


def test_display_name_is_the_real_name_with_the_badge_for_teachers() -> None:
    member = Member("t", TEACHER, SCHOOL, real_name="Анна Петровна Смирнова")
    assert expected_display_name(member) == "Анна Петровна Смирнова 🎓"


def test_every_reason_is_namespaced_and_distinct() -> None:
    values = [reason.value for reason in Reason]
    assert all(value.startswith("ru.sferum.") for value in values)
    assert len(set(values)) == len(values)


def test_a_refusal_carries_a_plain_string() -> None:
    decision = refuse(Reason.DM_ONLY)
    assert type(decision.reason) is str
    assert (decision.allowed, decision.reason) == (False, "ru.sferum.dm_only")


@pytest.mark.parametrize(
    ("state_key", "own"),
    [
        (f"_{TEACHER_ID}_PHONE", True),  # what Element Call and Element X send
        (f"{TEACHER_ID}_PHONE", True),
        (TEACHER_ID, True),
        (f"_{PUPIL}_PHONE", False),  # announcing (or ending) someone else's membership
        (PUPIL, False),
        (f"_{TEACHER_ID}", False),
        (f"{TEACHER_ID}x_PHONE", False),
        ("", False),
    ],
)
def test_a_call_membership_is_its_owners(state_key: str, own: bool) -> None:
    for room in ("own-room", "class-chat"):
        decision = may_send_state(
            "org.matrix.msc3401.call.member",
            {"application": "m.call"},
            sender=TEACHER_ID,
            state_key=state_key,
            is_platform=False,
            room=ROOMS[room],
            allow_encrypted_dms=False,
        )
        assert decision == _expected(None if own else Reason.CALL_MEMBERSHIP_NOT_OWN)
