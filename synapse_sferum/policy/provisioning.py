"""Planning the provisioned rooms of one school (DESIGN §3), from plain directory data.

Pure: the glue reads the directory into the views below, and applies the plans and diffs with the
Synapse API. Each room's members follow from "circles" of people around what the room belongs to
(the school, a class, a pupil), so the table `_SHAPES` reads like DESIGN §3's table.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from sferum_shared.rooms import CLASS_KINDS, ORG_KINDS, RoomKey, RoomKind, Scope
from sferum_shared.vocabulary import EventType
from synapse_sferum.calls import widget_state
from synapse_sferum.policy import matrix

# Power levels
EVERYONE = 0
MODERATOR = 50
PLATFORM = 100


@attrs.frozen
class ClassView:
    """A homeroom class («5А») or a subject group («5А Алгебра»), with person sourcedIds."""

    class_id: str
    title: str
    is_homeroom: bool
    student_ids: frozenset[str]
    teacher_ids: frozenset[str]
    class_teacher_ids: frozenset[str] = frozenset()  # homerooms: the primary teacher(s)


@attrs.frozen
class PupilView:
    person_id: str
    name: str  # as the diary room shows it: «Имя Фамилия»
    guardian_ids: frozenset[str]


@attrs.frozen
class OrgView:
    """One school's directory. A class's guardians are found through its pupils (`pupils`), never
    listed apart, so a guardian is in a class's rooms only because a child is in that class."""

    org_id: str
    name: str
    teacher_ids: frozenset[str]
    staff_ids: frozenset[str]
    classes: tuple[ClassView, ...]
    pupils: tuple[PupilView, ...]


@attrs.frozen
class RoomPlan:
    """What one provisioned room should look like now."""

    key: RoomKey
    name: str
    topic: str
    members: frozenset[str]  # Matrix user IDs of linked people; the platform's bot is implied
    moderators: frozenset[str]  # user IDs at MODERATOR, a subset of members
    posters_level: int  # events_default: who may post messages
    parent: RoomKey | None  # the space that lists this room
    call: RoomKey | None = None  # whose call the room's call widget joins; None: no widget

    @property
    def is_space(self) -> bool:
        return self.key.kind.is_space

    @property
    def federate(self) -> bool:
        return self.key.kind.federates


class _Circle(enum.Enum):
    """People around what a room belongs to: the school, a class, or a pupil (diary)."""

    PUPILS = enum.auto()  # the class's pupils; in a diary, the pupil
    GUARDIANS = enum.auto()  # the guardians of those pupils
    TEACHERS = enum.auto()  # the school's teachers, or the class's
    CLASS_TEACHER = enum.auto()
    STAFF = enum.auto()  # the school's staff


PUPILS, GUARDIANS, TEACHERS, CLASS_TEACHER, STAFF = _Circle  # short names for the tables


@attrs.frozen
class _Shape:
    members: tuple[_Circle, ...]
    moderators: _Circle | None
    posters_level: int


# DESIGN §3's table: who is in each kind of room, who moderates, and who posts.
_SHAPES: Mapping[RoomKind, _Shape] = {
    RoomKind.SCHOOL_SPACE: _Shape((TEACHERS, STAFF), STAFF, MODERATOR),
    RoomKind.SCHOOL_NEWS: _Shape((TEACHERS, STAFF), STAFF, EVERYONE),
    RoomKind.STAFF: _Shape((TEACHERS, STAFF), STAFF, EVERYONE),
    RoomKind.BROADCAST: _Shape((TEACHERS, STAFF), STAFF, MODERATOR),
    RoomKind.CLASS_SPACE: _Shape((PUPILS, GUARDIANS, TEACHERS), TEACHERS, PLATFORM),
    RoomKind.CLASS_NEWS: _Shape((PUPILS, GUARDIANS, TEACHERS), TEACHERS, MODERATOR),
    RoomKind.CLASS_CHAT: _Shape((PUPILS, TEACHERS), TEACHERS, EVERYONE),
    RoomKind.PARENTS: _Shape((GUARDIANS,), None, EVERYONE),
    RoomKind.MEETING: _Shape((GUARDIANS, CLASS_TEACHER, STAFF), CLASS_TEACHER, EVERYONE),
    RoomKind.DIARY: _Shape((PUPILS, GUARDIANS), None, EVERYONE),
    RoomKind.LESSON: _Shape((PUPILS, TEACHERS), TEACHERS, EVERYONE),
}

# Name and topic of each kind; "{title}" is the school's name, the class's or the pupil's.
_TEXTS: Mapping[RoomKind, tuple[str, str]] = {
    RoomKind.SCHOOL_SPACE: ("{title}", "Школа: её комнаты и классы"),
    RoomKind.SCHOOL_NEWS: (
        "Новости школы",
        "Новости школы. Каждая публикация приходит в новости всех классов",
    ),
    RoomKind.STAFF: ("Учительская", "Учителя и сотрудники школы и школ-партнёров"),
    RoomKind.BROADCAST: (
        "Трансляции",
        "Трансляции школы. Семьи смотрят их в новостях своего класса",
    ),
    RoomKind.CLASS_SPACE: ("{title}", "Комнаты класса {title}"),
    RoomKind.CLASS_NEWS: ("{title} — новости", "Новости класса и школы. Пишут учителя класса"),
    RoomKind.CLASS_CHAT: ("{title} — чат класса", "Ученики и учителя: {title}"),
    RoomKind.PARENTS: ("{title} — родители", "Родители учеников: {title}"),
    RoomKind.MEETING: (
        "{title} — родительское собрание",
        "Родители, классный руководитель и администрация школы",
    ),
    RoomKind.DIARY: (
        "Дневник: {title}",
        "Оценки и задания ученика; видят только ученик и его родители",
    ),
    RoomKind.LESSON: ("{title} — урок", "Видеоуроки: {title}"),
}

# Rooms that show the SFU's call page (DESIGN §3, §7), and whose call it joins: lessons and the
# broadcast room their own; a class news room the school's broadcast, which families watch there
# without joining the broadcast room.
_CALLS: Mapping[RoomKind, RoomKind] = {
    RoomKind.LESSON: RoomKind.LESSON,
    RoomKind.BROADCAST: RoomKind.BROADCAST,
    RoomKind.CLASS_NEWS: RoomKind.BROADCAST,
}

# A subject group has no homeroom link in OneRoster, so its rooms hang in the school space.
_SUBJECT_GROUP_KINDS = (RoomKind.CLASS_CHAT, RoomKind.LESSON)


def desired_rooms(org: OrgView, linked: Mapping[str, str]) -> list[RoomPlan]:
    """Every room the school should have, with its members; parents come before their children.

    `linked` maps person sourcedIds to Matrix user IDs, for linked people only. A diary is
    planned only when its pupil or a guardian is linked (no empty diary rooms).
    """
    school = RoomKey(RoomKind.SCHOOL_SPACE, org.org_id)
    guardians_of = {pupil.person_id: pupil.guardian_ids for pupil in org.pupils}
    return [
        *_school_rooms(org, school, linked),
        *(
            plan
            for cls in org.classes
            for plan in _class_rooms(cls, org, school, guardians_of, linked)
        ),
        *_diaries(org, linked),
    ]


def _school_rooms(org: OrgView, school: RoomKey, linked: Mapping[str, str]) -> list[RoomPlan]:
    circles = {TEACHERS: org.teacher_ids, STAFF: org.staff_ids}
    return [
        _plan(
            RoomKey(kind, org.org_id),
            org.name,
            circles,
            linked,
            parent=None if kind is RoomKind.SCHOOL_SPACE else school,
            org_id=org.org_id,
        )
        for kind in ORG_KINDS
    ]


def _class_rooms(
    cls: ClassView,
    org: OrgView,
    school: RoomKey,
    guardians_of: Mapping[str, frozenset[str]],
    linked: Mapping[str, str],
) -> list[RoomPlan]:
    circles = {
        PUPILS: cls.student_ids,
        GUARDIANS: frozenset().union(*(guardians_of.get(pid, ()) for pid in cls.student_ids)),
        TEACHERS: cls.teacher_ids | cls.class_teacher_ids,
        CLASS_TEACHER: cls.class_teacher_ids,
        STAFF: org.staff_ids,
    }
    if cls.is_homeroom:
        space = RoomKey(RoomKind.CLASS_SPACE, cls.class_id)
        placed = [
            (kind, school if kind is RoomKind.CLASS_SPACE else space) for kind in CLASS_KINDS
        ]
    else:
        placed = [(kind, school) for kind in _SUBJECT_GROUP_KINDS]
    return [
        _plan(
            RoomKey(kind, cls.class_id),
            cls.title,
            circles,
            linked,
            parent=parent,
            org_id=org.org_id,
        )
        for kind, parent in placed
    ]


def _diaries(org: OrgView, linked: Mapping[str, str]) -> Iterator[RoomPlan]:
    for pupil in org.pupils:
        circles = {PUPILS: frozenset({pupil.person_id}), GUARDIANS: pupil.guardian_ids}
        # No parent space: a space would show every diary's room ID to the whole class.
        key = RoomKey(RoomKind.DIARY, pupil.person_id)
        diary = _plan(key, pupil.name, circles, linked, parent=None, org_id=org.org_id)
        if diary.members:
            yield diary


def _plan(
    key: RoomKey,
    title: str,
    circles: Mapping[_Circle, frozenset[str]],
    linked: Mapping[str, str],
    *,
    parent: RoomKey | None,
    org_id: str,
) -> RoomPlan:
    shape = _SHAPES[key.kind]
    name, topic = _TEXTS[key.kind]

    def users(of: Iterable[_Circle]) -> frozenset[str]:
        person_ids = frozenset().union(*(circles.get(circle, ()) for circle in of))
        return frozenset(linked[pid] for pid in person_ids if pid in linked)

    return RoomPlan(
        key=key,
        name=name.format(title=title),
        topic=topic.format(title=title),
        members=users(shape.members),
        moderators=users(() if shape.moderators is None else (shape.moderators,)),
        posters_level=shape.posters_level,
        parent=parent,
        call=_call_room(key, org_id),
    )


def _call_room(key: RoomKey, org_id: str) -> RoomKey | None:
    kind = _CALLS.get(key.kind)
    if kind is None:
        return None
    return RoomKey(kind, org_id if kind.scope is Scope.ORG else key.scope_id)


# Levels of single event types; anything unlisted falls to events_default or state_default.
_EVENT_LEVELS: Mapping[str, int] = {
    matrix.NAME: PLATFORM,
    matrix.POWER_LEVELS: PLATFORM,
    matrix.HISTORY_VISIBILITY: PLATFORM,
    matrix.CANONICAL_ALIAS: PLATFORM,
    matrix.AVATAR: PLATFORM,
    matrix.TOMBSTONE: PLATFORM,
    matrix.SERVER_ACL: PLATFORM,
    matrix.ENCRYPTION: PLATFORM,
    EventType.ROOM_KIND: PLATFORM,
    matrix.WIDGETS: PLATFORM,
    matrix.PINNED_EVENTS: MODERATOR,
    # Everyone reacts, and everyone may take back their own reactions and messages, even where
    # events_default keeps readers from posting; `redact` still decides who removes others' posts.
    matrix.REACTION: EVERYONE,
    matrix.REDACTION: EVERYONE,
}


# Rooms whose calls Element Call and Element X join (`sfu.grants` decides who publishes what):
# every member announces their own devices in the call (`policy.events.owns_call_membership`).
_CALL_MEMBERSHIP_ROOMS = frozenset({RoomKind.LESSON, RoomKind.MEETING, RoomKind.BROADCAST})


def _call_levels(kind: RoomKind) -> dict[str, int]:
    return {matrix.CALL_MEMBER: EVERYONE} if kind in _CALL_MEMBERSHIP_ROOMS else {}


def power_levels(
    plan: RoomPlan, bot_user_id: str, current: Mapping[str, object] | None
) -> dict[str, object]:
    """The whole m.room.power_levels content for `plan`.

    Keys we do not know survive from `current`, so fields of future room versions are not lost;
    every key we know is written whole, so the result depends on nothing else in `current`.
    The staff room is the one room whose members invite (partner schools' staff): its invite
    level is open, and `may_invite` decides who and whom.
    """
    users: dict[str, int] = dict.fromkeys(sorted(plan.moderators), MODERATOR)
    users[bot_user_id] = PLATFORM
    return {
        **(current or {}),
        "users": users,
        "users_default": EVERYONE,
        "events_default": plan.posters_level,
        "state_default": PLATFORM,
        "invite": EVERYONE if plan.federate else PLATFORM,
        "kick": PLATFORM,
        "ban": PLATFORM,
        "redact": MODERATOR,
        "events": {**_EVENT_LEVELS, **_call_levels(plan.key.kind)},
        "notifications": {"room": MODERATOR},
    }


def call_widget(plan: RoomPlan, call_room_id: str, public_url: str | None) -> dict[str, Any]:
    """The content of the room's call widget (state key `calls.WIDGET_ID`).

    `call_room_id` is the room ID of `plan.call`. Without an SFU (`public_url` None) the
    content is empty, which takes away a widget placed while the deployment had one.
    """
    if plan.call is None or public_url is None:
        return {}
    return widget_state(plan.key.kind, call_room_id, public_url)


@attrs.frozen
class MembershipDiff:
    to_invite: frozenset[str]  # desired, neither joined nor invited yet
    to_join: frozenset[str]  # desired and not joined: each is invited (if need be), then joined
    to_remove: frozenset[str]  # joined or invited, and no longer desired


def membership_changes(
    plan_members: frozenset[str],
    current_joined: frozenset[str],
    current_invited: frozenset[str],
    bot: str,
    keep: frozenset[str] = frozenset(),
) -> MembershipDiff:
    """What to do to bring a room's membership to `plan_members`; the bot always stays.

    `keep` are members the directory cannot plan but who may stay: partner schools' staff in
    the staff room, whom our own teachers invited.
    """
    desired = plan_members - {bot}
    to_join = desired - current_joined
    return MembershipDiff(
        to_invite=to_join - current_invited,
        to_join=to_join,
        to_remove=(current_joined | current_invited) - desired - keep - {bot},
    )
