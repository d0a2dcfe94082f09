"""Maps a OneRoster 1.1 or 1.2 CSV roster onto the directory model.

Every problem found is collected and raised together as one `RosterError`. References between
files are not checked here: whether a class exists may depend on the directory, so `merge`
checks them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Generic, NamedTuple, TypeVar

import attrs

from sferum_shared.model import (
    ONEROSTER_ROLES,
    ClassType,
    Demographics,
    Enrollment,
    EnrollmentRole,
    ImportMode,
    KindChange,
    Org,
    Person,
    Role,
    RosterImport,
    SchoolClass,
)
from sferum_shared.roster.csvfiles import decode, read_folder, read_table, read_zip
from sferum_shared.roster.problems import Problems
from synapse_sferum.roster import fields
from synapse_sferum.roster.fields import Cells
from synapse_sferum.roster.manifest import Manifest, read_manifest

R = TypeVar("R")

ORG_TYPES = ("department", "district", "local", "national", "school", "state")
# users.role in 1.1 and roles.role in 1.2; ONEROSTER_ROLES maps both onto our roles.
ROLES_1_1 = ("administrator", "aide", "guardian", "parent", "proctor", "relative", "student",
             "teacher")  # fmt: skip
ROLES_1_2 = ("aide", "counselor", "districtAdministrator", "guardian", "parent", "principal",
             "proctor", "relative", "siteAdministrator", "student", "systemAdministrator",
             "teacher")  # fmt: skip

_org_type = fields.choice({name: name for name in ORG_TYPES})
_class_type = fields.choice({kind.value: kind for kind in ClassType})
_enrollment_role = fields.choice({role.value: role for role in EnrollmentRole})
_role_1_1 = fields.choice({name: ONEROSTER_ROLES[name] for name in ROLES_1_1})
_role_1_2 = fields.choice({name: ONEROSTER_ROLES[name] for name in ROLES_1_2})


def parse_roster(path: Path, today: date) -> RosterImport:
    """Parses a roster folder, or a zip file, of OneRoster CSVs; `today` bounds birth dates."""
    problems = Problems()
    if path.is_dir():
        files = read_folder(path, problems)
    else:
        files = read_zip(path.read_bytes(), path.name, problems)
    return _parse(files, problems, today)


def parse_roster_zip(data: bytes, today: date, name: str = "roster.zip") -> RosterImport:
    """Parses a zip of OneRoster CSVs, as the admin API receives it; `name` is for messages."""
    problems = Problems()
    return _parse(read_zip(data, name, problems), problems, today)


class _Grant(NamedTuple):
    """One roles.csv row (1.2): a role in an org."""

    role: Role
    org_id: str
    line: int


@attrs.frozen
class _Spec(Generic[R]):
    """How to read one file: its required columns, its key and how a row becomes a record."""

    file: str
    required: tuple[str, ...]
    build: Callable[[Cells], R]
    key: str = "sourcedId"
    unique: bool = True  # whether the key may appear only once


@attrs.define
class _Read(Generic[R]):
    """A file's records: active rows as (key, record), and deleted keys with their lines."""

    file: str
    mode: ImportMode
    columns: Mapping[str, int] = attrs.field(factory=dict)
    records: list[tuple[str, R]] = attrs.field(factory=list)
    deletions: dict[str, int] = attrs.field(factory=dict)

    def change(self, records: Mapping[str, object] | None = None) -> KindChange:
        return KindChange(
            mode=self.mode,
            upserts=dict(self.records) if records is None else records,
            deletions=frozenset(self.deletions),
            file=self.file,
            columns=self.columns,
            deletion_lines=self.deletions,
        )


def _parse(files: Mapping[str, bytes], problems: Problems, today: date) -> RosterImport:
    problems.raise_if_any()  # without the files there is nothing more to say
    manifest = read_manifest(files, problems)
    orgs = _read(_ORGS, files, manifest, problems).change()
    users = _read(_users_spec(manifest.version), files, manifest, problems)
    if manifest.version == "1.1":
        people = users.change()
    else:
        roles = _read(_ROLES, files, manifest, problems)
        people = users.change(_grant_roles(dict(users.records), roles, problems))
    change = RosterImport(
        orgs=orgs,
        people=people,
        demographics=_read(_demographics_spec(today), files, manifest, problems).change(),
        classes=_read(_CLASSES, files, manifest, problems).change(),
        enrollments=_read(_ENROLLMENTS, files, manifest, problems).change(),
    )
    problems.raise_if_any()
    return change


def _read(
    spec: _Spec[R], files: Mapping[str, bytes], manifest: Manifest, problems: Problems
) -> _Read[R]:
    """Reads one file: status, key, duplicates and required values are checked for every row."""
    mode = manifest.modes[spec.file]
    if mode is ImportMode.ABSENT or spec.file not in files:
        return _Read(spec.file, mode)
    text = decode(spec.file, files[spec.file], problems)
    delta = mode is ImportMode.DELTA
    required = (*spec.required, "status") if delta else spec.required
    table = None if text is None else read_table(spec.file, text, required, problems)
    if table is None:
        return _Read(spec.file, mode)
    result = _Read[R](spec.file, mode, table.columns)
    first_lines: dict[str, int] = {}
    for row in table.rows(problems):
        cells = Cells(table, row, problems)
        deletes = _deletes(cells, delta)
        key = cells.text(spec.key)
        if not cells.require((spec.key,)):
            continue
        if spec.unique:
            first = first_lines.setdefault(key, row.line)
            if first != row.line:
                cells.report(spec.key, f"{spec.key} {key!r} is already used on line {first}")
        if deletes:
            if cells.ok:
                result.deletions[key] = row.line
            continue
        cells.require(spec.required)
        record = spec.build(cells)  # even if incomplete, to report every bad value at once
        if cells.ok:
            result.records.append((key, record))
    return result


def _deletes(cells: Cells, delta: bool) -> bool:
    """Whether the row's status deletes it; a status the mode does not allow is reported."""
    status = cells.text("status").casefold()
    if delta and status not in ("active", "tobedeleted"):
        cells.report("status", f"status {status!r} is not one of active, tobedeleted")
    elif not delta and status not in ("", "active"):
        cells.report(
            "status",
            f"status {status!r} is not allowed in a bulk file; leave it empty "
            "(a bulk file deletes whatever it leaves out)",
        )
    return delta and status == "tobedeleted"


def _person(cells: Cells, roles: frozenset[Role], org_ids: tuple[str, ...]) -> Person:
    phone_column = "phone" if cells.text("phone") else "sms"
    return Person(
        sourced_id=cells.text("sourcedId"),
        given_name=cells.text("givenName"),
        family_name=cells.text("familyName"),
        roles=roles,
        org_ids=org_ids,
        middle_name=cells.text("middleName"),
        username=cells.text("username"),
        phone=cells.convert(phone_column, fields.phone, None),
        email=cells.text("email") or None,
        agent_ids=fields.id_list(cells.text("agentSourcedIds")),
        enabled=cells.convert("enabledUser", fields.boolean, True),
        origin=cells.origin,
    )


def _users_spec(version: str) -> _Spec[Person]:
    """1.1 users carry their role and orgs; 1.2 users get them from roles.csv."""
    required = ("sourcedId", "givenName", "familyName")
    if version != "1.1":
        return _Spec("users.csv", required, lambda c: _person(c, frozenset(), ()))
    return _Spec(
        "users.csv",
        (*required, "role", "orgSourcedIds"),
        lambda c: _person(
            c,
            frozenset({c.convert("role", _role_1_1, Role.STUDENT)}),
            fields.id_list(c.text("orgSourcedIds")),
        ),
    )


def _grant_roles(
    people: dict[str, Person], roles: _Read[_Grant], problems: Problems
) -> dict[str, Person]:
    """1.2: gives each user the roles and orgs of its roles.csv rows."""
    grants: dict[str, list[_Grant]] = {}
    user_column = roles.columns.get("userSourcedId", 0)
    for user_id, grant in roles.records:
        if user_id in people:
            grants.setdefault(user_id, []).append(grant)
        else:
            problems.add(
                roles.file,
                grant.line,
                user_column,
                f"userSourcedId {user_id!r} has no active row in users.csv; "
                "a 1.2 roster sends a user's roles together with the user",
            )
    granted: dict[str, Person] = {}
    for user_id, person in people.items():
        if user_id not in grants:
            origin = person.origin
            line = origin.line if origin else 0
            problems.add("users.csv", line, 0, f"user {user_id!r} has no role in roles.csv")
            continue
        granted[user_id] = attrs.evolve(
            person,
            roles=frozenset(g.role for g in grants[user_id]),
            org_ids=tuple(dict.fromkeys(g.org_id for g in grants[user_id])),
        )
    return granted


_ORGS = _Spec(
    "orgs.csv",
    ("sourcedId", "name", "type"),
    lambda c: Org(
        sourced_id=c.text("sourcedId"),
        name=c.text("name"),
        type=c.convert("type", _org_type, ""),
        parent_id=c.text("parentSourcedId") or None,
        origin=c.origin,
    ),
)
_ROLES = _Spec(
    "roles.csv",
    ("userSourcedId", "role", "orgSourcedId"),
    lambda c: _Grant(c.convert("role", _role_1_2, Role.STUDENT), c.text("orgSourcedId"), c.line),
    key="userSourcedId",
    unique=False,
)


def _demographics_spec(today: date) -> _Spec[Demographics]:
    born = fields.birth_date(today)
    return _Spec(
        "demographics.csv",
        ("sourcedId",),
        lambda c: Demographics(
            sourced_id=c.text("sourcedId"),
            birth_date=c.convert("birthDate", born, None),
            origin=c.origin,
        ),
    )


_CLASSES = _Spec(
    "classes.csv",
    ("sourcedId", "title", "classType", "schoolSourcedId"),
    lambda c: SchoolClass(
        sourced_id=c.text("sourcedId"),
        title=c.text("title"),
        org_id=c.text("schoolSourcedId"),
        class_type=c.convert("classType", _class_type, ClassType.HOMEROOM),
        origin=c.origin,
    ),
)
_ENROLLMENTS = _Spec(
    "enrollments.csv",
    ("sourcedId", "classSourcedId", "userSourcedId", "role"),
    lambda c: Enrollment(
        sourced_id=c.text("sourcedId"),
        class_id=c.text("classSourcedId"),
        person_id=c.text("userSourcedId"),
        role=c.convert("role", _enrollment_role, EnrollmentRole.STUDENT),
        primary=c.convert("primary", fields.boolean, False),
        end_date=c.convert("endDate", fields.iso_date, None),
        origin=c.origin,
    ),
)
