"""Every kind of room the platform makes, one row each: the table to read and the one to change.

A row says who is in a room of that kind (as "circles" of people around what the room belongs
to: the school, a class, a pupil), who moderates, who posts, what the room is called, and which
call its widget opens. What every part of the platform shares about a kind (its scope and its
alias) is in `sferum_shared.rooms`; a test checks that both tables cover every `RoomKind`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from sferum_shared.rooms import RoomKind

# Power levels the platform uses.
EVERYONE = 0
MODERATOR = 50
PLATFORM = 100


class Circle(enum.Enum):
    """People around what a room belongs to: the school, a class, a pupil (diary), or one
    person (their own documents)."""

    PUPILS = enum.auto()  # the class's pupils; in a diary, the pupil
    GUARDIANS = enum.auto()  # the guardians of those pupils
    TEACHERS = enum.auto()  # the school's teachers, or the class's
    CLASS_TEACHER = enum.auto()
    STAFF = enum.auto()  # the school's staff
    OWNER = enum.auto()  # a personal room's one person


PUPILS, GUARDIANS, TEACHERS, CLASS_TEACHER, STAFF, OWNER = Circle  # short names for the table


@attrs.frozen
class CallWidget:
    """The SFU's call page as a room widget (`synapse_sferum.calls`)."""

    joins: RoomKind  # whose call it opens: the room's own, or the school's broadcast
    title: str  # the widget's name in clients


@attrs.frozen
class KindSpec:
    members: tuple[Circle, ...]
    moderators: Circle | None
    posters_level: int  # events_default: who may post messages
    name: str  # "{title}" is the school's name, the class's or the pupil's
    topic: str
    # Who may start a poll (and end their own): the power level it takes; PLATFORM: nobody.
    # Everyone in a room with polls may vote, readers of a news room too.
    poll_level: int = PLATFORM
    call_widget: CallWidget | None = None
    # Element Call and Element X join the room's call: every member announces their own devices
    # (`policy.events.owns_call_membership`); `sfu.grants` decides who publishes what.
    call_memberships: bool = False
    # A subject group (a scheduled class: «5А Алгебра») has no homeroom link in OneRoster: it
    # gets only the kinds marked here, hung in the school space.
    subject_group: bool = False


LESSON_CALL = CallWidget(RoomKind.LESSON, "Урок")
BROADCAST_CALL = CallWidget(RoomKind.BROADCAST, "Трансляция")

ROOM_KINDS: Mapping[RoomKind, KindSpec] = {
    RoomKind.SCHOOL_SPACE: KindSpec(
        (TEACHERS, STAFF), STAFF, MODERATOR, "{title}", "Школа: её комнаты и классы"
    ),
    RoomKind.SCHOOL_NEWS: KindSpec(
        (TEACHERS, STAFF),
        STAFF,
        EVERYONE,
        "Новости школы",
        "Новости школы. Каждая публикация приходит в новости всех классов",
        poll_level=EVERYONE,  # mirrored into every class's news; the votes count together
    ),
    RoomKind.STAFF: KindSpec(
        (TEACHERS, STAFF),
        STAFF,
        EVERYONE,
        "Учительская",
        "Учителя и сотрудники школы и школ-партнёров",
        poll_level=MODERATOR,  # the school's staff
    ),
    RoomKind.BROADCAST: KindSpec(
        (TEACHERS, STAFF),
        STAFF,
        MODERATOR,
        "Трансляции",
        "Трансляции школы. Семьи смотрят их в новостях своего класса",
        call_widget=BROADCAST_CALL,
        call_memberships=True,
    ),
    RoomKind.CLASS_SPACE: KindSpec(
        (PUPILS, GUARDIANS, TEACHERS), TEACHERS, PLATFORM, "{title}", "Комнаты класса {title}"
    ),
    RoomKind.CLASS_NEWS: KindSpec(
        (PUPILS, GUARDIANS, TEACHERS),
        TEACHERS,
        MODERATOR,
        "{title} — новости",
        "Новости класса и школы. Пишут учителя класса",
        poll_level=MODERATOR,
        # Families watch the school's broadcast here, without joining the broadcast room.
        call_widget=BROADCAST_CALL,
    ),
    RoomKind.CLASS_CHAT: KindSpec(
        (PUPILS, TEACHERS),
        TEACHERS,
        EVERYONE,
        "{title} — чат класса",
        "Ученики и учителя: {title}",
        poll_level=MODERATOR,  # teachers
        subject_group=True,
    ),
    RoomKind.PARENTS: KindSpec(
        (GUARDIANS,),
        None,
        EVERYONE,
        "{title} — родители",
        "Родители учеников: {title}",
        poll_level=EVERYONE,  # any guardian
    ),
    RoomKind.MEETING: KindSpec(
        (GUARDIANS, CLASS_TEACHER, STAFF),
        CLASS_TEACHER,
        EVERYONE,
        "{title} — родительское собрание",
        "Родители, классный руководитель и администрация школы",
        poll_level=MODERATOR,  # the class teacher
        call_memberships=True,
    ),
    RoomKind.DIARY: KindSpec(
        (PUPILS, GUARDIANS),
        None,
        EVERYONE,
        "Дневник: {title}",
        "Оценки и задания ученика; видят только ученик и его родители",
    ),
    # A place of one's own for papers (certificates, applications, medical notes): the Files
    # panel of Element shows them. The platform's bot keeps the room; nobody else is in it.
    RoomKind.DOCUMENTS: KindSpec(
        (OWNER,),
        None,
        EVERYONE,
        "Мои документы",
        "Ваши документы и файлы: их видите только вы",
    ),
    RoomKind.LESSON: KindSpec(
        (PUPILS, TEACHERS),
        TEACHERS,
        EVERYONE,
        "{title} — урок",
        "Видеоуроки: {title}",
        poll_level=MODERATOR,  # teachers
        call_widget=LESSON_CALL,
        call_memberships=True,
        subject_group=True,
    ),
}

SUBJECT_GROUP_KINDS = tuple(kind for kind, spec in ROOM_KINDS.items() if spec.subject_group)
