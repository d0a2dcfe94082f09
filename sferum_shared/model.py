"""The school directory's plain data model, shared by the module, the CLI and the bridge.

Nothing here imports Synapse, nio or aiortc: these are frozen values that the rules and the
roster parser exchange, so every part can be tested without a server.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import date

import attrs

from sferum_shared.ids import PersonId


class Role(enum.Enum):
    """A person's place in the school, as the rules see it."""

    STUDENT = "student"
    GUARDIAN = "guardian"
    TEACHER = "teacher"
    STAFF = "staff"


ADULT_ROLES = frozenset({Role.GUARDIAN, Role.TEACHER, Role.STAFF})
SCHOOL_ADULT_ROLES = frozenset({Role.TEACHER, Role.STAFF})

# OneRoster 1.1 `users.role` and 1.2 `roles.role` values, mapped onto our four roles.
ONEROSTER_ROLES: Mapping[str, Role] = {
    "student": Role.STUDENT,
    "guardian": Role.GUARDIAN,
    "parent": Role.GUARDIAN,
    "relative": Role.GUARDIAN,
    "teacher": Role.TEACHER,
    "aide": Role.STAFF,
    "proctor": Role.STAFF,
    "administrator": Role.STAFF,
    "counselor": Role.STAFF,
    "principal": Role.STAFF,
    "siteAdministrator": Role.STAFF,
    "districtAdministrator": Role.STAFF,
    "systemAdministrator": Role.STAFF,
}


class ClassType(enum.Enum):
    HOMEROOM = "homeroom"  # «5А»
    SCHEDULED = "scheduled"  # a subject group: «5А Алгебра», «Английский гр.1»


class EnrollmentRole(enum.Enum):
    STUDENT = "student"
    TEACHER = "teacher"


@attrs.frozen
class Origin:
    """Where a record came from, so that errors can name file and line."""

    file: str
    line: int


@attrs.frozen
class Org:
    sourced_id: str
    name: str
    type: str  # school, district, ... (OneRoster orgs.type)
    parent_id: str | None = None
    origin: Origin | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Person:
    sourced_id: str
    given_name: str
    family_name: str
    roles: frozenset[Role]
    org_ids: tuple[str, ...]
    middle_name: str = ""
    username: str = ""
    phone: str | None = None  # E.164 with "+", as the roster gives it after normalisation
    email: str | None = None
    agent_ids: tuple[
        str, ...
    ] = ()  # OneRoster agentSourcedIds: a pupil's guardians or a guardian's pupils
    enabled: bool = True
    origin: Origin | None = attrs.field(default=None, eq=False)

    @property
    def real_name(self) -> str:
        """The name everyone sees: «Имя Отчество Фамилия», empty parts left out."""
        return " ".join(p for p in (self.given_name, self.middle_name, self.family_name) if p)


@attrs.frozen
class Demographics:
    sourced_id: str  # the person's sourcedId
    birth_date: date | None
    origin: Origin | None = attrs.field(default=None, eq=False)


@attrs.frozen
class SchoolClass:
    sourced_id: str
    title: str
    org_id: str
    class_type: ClassType
    origin: Origin | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Enrollment:
    sourced_id: str
    class_id: str
    person_id: str
    role: EnrollmentRole
    primary: bool = False  # a primary teacher of a homeroom class is its class teacher
    # OneRoster endDate, its last day: over the day after; None never ends (policy/year_end.py)
    end_date: date | None = None
    origin: Origin | None = attrs.field(default=None, eq=False)


class ImportMode(enum.Enum):
    BULK = "bulk"  # the file is the whole set of that kind: what it lacks is deleted
    DELTA = "delta"  # rows are upserts, or deletions where status is tobedeleted
    ABSENT = "absent"  # the kind is left as it is


RECORD_KINDS = ("orgs", "people", "demographics", "classes", "enrollments")


@attrs.frozen
class KindChange:
    """What one roster file says about one kind of record."""

    mode: ImportMode
    upserts: Mapping[str, object] = attrs.field(factory=dict)
    deletions: frozenset[str] = frozenset()
    file: str = ""
    # header name -> 1-based column, so reference errors found later can name the column
    columns: Mapping[str, int] = attrs.field(factory=dict)
    # deleted sourcedId -> its line in `file`, so an error a deletion causes can point at it
    deletion_lines: Mapping[str, int] = attrs.field(factory=dict)


@attrs.frozen
class RosterImport:
    """A parsed roster: for each kind in RECORD_KINDS, what changes."""

    orgs: KindChange
    people: KindChange
    demographics: KindChange
    classes: KindChange
    enrollments: KindChange

    def kind(self, name: str) -> KindChange:
        change: KindChange = getattr(self, name)
        return change


@attrs.frozen
class Problem:
    """One thing wrong with the input, pinned to file:line:column (1-based; 0 = whole file)."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class RosterError(Exception):
    """The roster cannot be applied; nothing was changed."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@attrs.frozen
class ImportCounts:
    created: int = 0
    updated: int = 0
    deleted: int = 0


@attrs.frozen
class ImportReport:
    """What an applied import changed, per kind (RECORD_KINDS)."""

    counts: Mapping[str, ImportCounts]
    changed_person_ids: frozenset[str] = frozenset()

    @property
    def wrote_anything(self) -> bool:
        return any(c.created or c.updated or c.deleted for c in self.counts.values())

    def to_json(self) -> dict[str, dict[str, int]]:
        return {k: attrs.asdict(c) for k, c in self.counts.items()}


@attrs.frozen
class Member:
    """What the rules know about one linked account: a person and the relations around it.

    Built by the directory store from the tables; kept small and hashable so it caches well.
    """

    person_id: PersonId
    roles: frozenset[Role]
    org_ids: frozenset[str]
    real_name: str = ""
    student_class_ids: frozenset[str] = frozenset()  # classes the person attends
    teacher_class_ids: frozenset[str] = frozenset()  # classes the person teaches
    child_ids: frozenset[PersonId] = frozenset()  # guardian: the pupils in the person's care
    child_class_ids: frozenset[str] = frozenset()  # guardian: the classes of those pupils
    guardian_ids: frozenset[PersonId] = frozenset()  # pupil: the person's guardians
    is_minor: bool = False

    def has(self, role: Role) -> bool:
        return role in self.roles

    @property
    def is_school_adult(self) -> bool:
        """Teachers and staff: the school's own adults."""
        return bool(self.roles & SCHOOL_ADULT_ROLES)
