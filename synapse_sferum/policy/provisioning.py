"""Planning the provisioned rooms of one school (docs/rooms-and-rules.md), from directory data.

Pure: the glue reads the directory into the views below, and applies the plans and diffs with the
Synapse API. Each room's members follow from "circles" of people around what the room belongs to
(the school, a class, a pupil), as each kind's row in `room_kinds.ROOM_KINDS` says.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from sferum_shared import matrix
from sferum_shared.rooms import CLASS_KINDS, ORG_KINDS, RoomKey, RoomKind, Scope
from sferum_shared.vocabulary import EventType
from synapse_sferum.policy.call_widget import widget_state
from synapse_sferum.policy.room_kinds import (
    CLASS_TEACHER,
    EVERYONE,
    GUARDIANS,
    MODERATOR,
    OWNER,
    PLATFORM,
    PUPILS,
    ROOM_KINDS,
    STAFF,
    SUBJECT_GROUP_KINDS,
    TEACHERS,
    Circle,
)


@attrs.frozen
class ClassView:
    """A homeroom class («5А») or a subject group («5А Алгебра»), with person sourcedIds."""

    class_id: str
    title: str
    is_homeroom: bool
    student_ids: frozenset[str]
    teacher_ids: frozenset[str]
    class_teacher_ids: frozenset[str] = frozenset()  # homerooms: the primary teacher(s)
    archived: bool = False  # every enrollment over (policy/year_end.py): rooms kept read-only


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
    archived: bool = False  # read-only: nobody but the platform sends anything

    @property
    def is_space(self) -> bool:
        return self.key.kind.is_space

    @property
    def federate(self) -> bool:
        return self.key.kind.federates


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
        *_documents(org, linked),
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
        placed = [(kind, school) for kind in SUBJECT_GROUP_KINDS]
    return [
        _plan(
            RoomKey(kind, cls.class_id),
            cls.title,
            circles,
            linked,
            parent=parent,
            org_id=org.org_id,
            archived=cls.archived,
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


def _documents(org: OrgView, linked: Mapping[str, str]) -> Iterator[RoomPlan]:
    """«Мои документы» for every linked adult of the school: its teachers, staff and the
    guardians of its pupils (a guardian of pupils of two schools gets one, in the first)."""
    guardians = frozenset().union(*(pupil.guardian_ids for pupil in org.pupils))
    for person_id in sorted(org.teacher_ids | org.staff_ids | guardians):
        if person_id in linked:
            key = RoomKey(RoomKind.DOCUMENTS, person_id)
            circles = {OWNER: frozenset({person_id})}
            yield _plan(key, "", circles, linked, parent=None, org_id=org.org_id)


def _plan(
    key: RoomKey,
    title: str,
    circles: Mapping[Circle, frozenset[str]],
    linked: Mapping[str, str],
    *,
    parent: RoomKey | None,
    org_id: str,
    archived: bool = False,
) -> RoomPlan:
    spec = ROOM_KINDS[key.kind]

    def users(of: Iterable[Circle]) -> frozenset[str]:
        person_ids = frozenset().union(*(circles.get(circle, ()) for circle in of))
        return frozenset(linked[pid] for pid in person_ids if pid in linked)

    name = spec.name.format(title=title)
    return RoomPlan(
        key=key,
        name=f"{name} {ARCHIVE_MARK}" if archived else name,
        topic=spec.topic.format(title=title),
        members=users(spec.members),
        moderators=users(() if spec.moderators is None else (spec.moderators,)),
        posters_level=PLATFORM if archived else spec.posters_level,
        parent=parent,
        call=None if archived else _call_room(key, org_id),
        archived=archived,
    )


ARCHIVE_MARK = "(архив)"  # after an archived room's name


def _call_room(key: RoomKey, org_id: str) -> RoomKey | None:
    widget = ROOM_KINDS[key.kind].call_widget
    if widget is None:
        return None
    kind = widget.joins
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


def pin_level() -> int:
    """The power level pinning a post (`m.room.pinned_events`) takes in a provisioned room."""
    return _EVENT_LEVELS[matrix.PINNED_EVENTS]


def _call_levels(kind: RoomKind) -> dict[str, int]:
    return {matrix.CALL_MEMBER: EVERYONE} if ROOM_KINDS[kind].call_memberships else {}


def _poll_levels(kind: RoomKind) -> dict[str, int]:
    """Who starts and ends polls, written where clients look before they offer the button
    (Element Web asks `maySendEvent(poll.start)`); in a room with polls everyone votes."""
    level = ROOM_KINDS[kind].poll_level
    votes = {matrix.POLL_RESPONSE: EVERYONE} if level < PLATFORM else {}
    return {matrix.POLL_START: level, matrix.POLL_END: level, **votes}


def power_levels(
    plan: RoomPlan, bot_user_id: str, current: Mapping[str, object] | None
) -> dict[str, object]:
    """The whole m.room.power_levels content for `plan`.

    Keys we do not know survive from `current`, so fields of future room versions are not lost;
    every key we know is written whole, so the result depends on nothing else in `current`.
    The staff room is the one room whose members invite (partner schools' staff): its invite
    level is open, and `may_invite` decides who and whom. An archived room is read-only: every
    level is the platform's, so nobody else sends, reacts, redacts or changes anything.
    """
    users: dict[str, int] = dict.fromkeys(sorted(plan.moderators), MODERATOR)
    users[bot_user_id] = PLATFORM
    events = {**_EVENT_LEVELS, **_call_levels(plan.key.kind), **_poll_levels(plan.key.kind)}
    levels: dict[str, object] = {
        **(current or {}),
        "users": users,
        "users_default": EVERYONE,
        "events_default": plan.posters_level,
        "state_default": PLATFORM,
        "invite": EVERYONE if plan.federate else PLATFORM,
        "kick": PLATFORM,
        "ban": PLATFORM,
        "redact": MODERATOR,
        "events": events,
        "notifications": {"room": MODERATOR},
    }
    if plan.archived:  # read-only: every level the platform's, members keep reading
        levels.update(
            invite=PLATFORM,
            redact=PLATFORM,
            events=dict.fromkeys(events, PLATFORM),
            notifications={"room": PLATFORM},
        )
    return levels


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


def provisioning_waves(plans: Sequence[RoomPlan]) -> list[list[RoomPlan]]:
    """The plans in waves that may each be applied all at once, in their given order within one.

    A room comes in a wave after the rooms it names, when they are planned too: its space
    (`parent`: linked from the space, so the space must exist) and the room whose call its
    widget joins (`call`: the widget names that room's ID). Everything else goes first, so
    rooms of different schools and classes are reconciled side by side.
    """
    by_key = {plan.key: plan for plan in plans}
    waves: dict[RoomKey, int] = {}

    def wave(plan: RoomPlan) -> int:
        if plan.key not in waves:
            needs = [
                by_key[key]
                for key in (plan.parent, plan.call)
                if key is not None and key != plan.key and key in by_key
            ]
            waves[plan.key] = max((wave(need) + 1 for need in needs), default=0)
        return waves[plan.key]

    grouped: dict[int, list[RoomPlan]] = {}
    for plan in plans:
        grouped.setdefault(wave(plan), []).append(plan)
    return [grouped[n] for n in sorted(grouped)]


class RunState(enum.Enum):
    QUEUED = "queued"  # asked for; starts when the run going now ends
    RUNNING = "running"
    FINISHED = "finished"  # it, or a later run that covers it, has finished


def run_state(asked: int, requested: int, started: int, finished: int) -> RunState | None:
    """Where run number `asked` is, from the provisioner's counters; None: no such run (yet).

    Runs are numbered from 1 as they start; a request gets the number of the next run to start,
    and a run that finishes answers for every earlier number too.
    """
    if not 1 <= asked <= max(requested, started):
        return None
    if asked <= finished:
        return RunState.FINISHED
    return RunState.RUNNING if asked <= started else RunState.QUEUED
