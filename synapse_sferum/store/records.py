"""Rows ⇄ model records for the directory tables: one table description per kind.

Kept apart from the SQL that runs them so that loading and writing share one column list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import attrs

from sferum_shared.model import (
    ClassType,
    Demographics,
    Enrollment,
    EnrollmentRole,
    Org,
    Person,
    Role,
    SchoolClass,
)

Row = tuple[Any, ...]


@attrs.frozen
class KindTable:
    """How one record kind is stored: its table, columns (key first) and converters."""

    table: str
    columns: tuple[str, ...]
    to_row: Callable[[Any], Row]
    from_row: Callable[[Row], Any]

    def select_sql(self) -> str:
        return f"SELECT {', '.join(self.columns)} FROM {self.table}"

    def insert_sql(self) -> str:
        marks = ", ".join("?" for _ in self.columns)
        return f"INSERT INTO {self.table} ({', '.join(self.columns)}) VALUES ({marks})"

    def update_sql(self) -> str:
        sets = ", ".join(f"{c} = ?" for c in self.columns[1:])
        return f"UPDATE {self.table} SET {sets} WHERE {self.columns[0]} = ?"

    def delete_sql(self) -> str:
        return f"DELETE FROM {self.table} WHERE {self.columns[0]} = ?"

    def update_args(self, record: Any) -> Row:
        row = self.to_row(record)
        return (*row[1:], row[0])


def _ids(values: Sequence[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False)


def _person_row(p: Person) -> Row:
    return (
        p.sourced_id,
        p.given_name,
        p.family_name,
        p.middle_name,
        ",".join(sorted(r.value for r in p.roles)),
        _ids(p.org_ids),
        p.username,
        p.phone,
        p.email,
        _ids(p.agent_ids),
        int(p.enabled),
    )


def _person_from(row: Row) -> Person:
    return Person(
        sourced_id=row[0],
        given_name=row[1],
        family_name=row[2],
        middle_name=row[3],
        roles=frozenset(Role(r) for r in row[4].split(",") if r),
        org_ids=tuple(json.loads(row[5])),
        username=row[6],
        phone=row[7],
        email=row[8],
        agent_ids=tuple(json.loads(row[9])),
        enabled=bool(row[10]),
    )


ORGS = KindTable(
    "sferum_orgs",
    ("sourced_id", "name", "type", "parent_id"),
    lambda o: (o.sourced_id, o.name, o.type, o.parent_id),
    lambda r: Org(sourced_id=r[0], name=r[1], type=r[2], parent_id=r[3]),
)
PEOPLE = KindTable(
    "sferum_people",
    (
        "sourced_id",
        "given_name",
        "family_name",
        "middle_name",
        "roles",
        "org_ids",
        "username",
        "phone",
        "email",
        "agent_ids",
        "enabled",
    ),
    _person_row,
    _person_from,
)
DEMOGRAPHICS = KindTable(
    "sferum_demographics",
    ("sourced_id", "birth_date"),
    lambda d: (d.sourced_id, d.birth_date.isoformat() if d.birth_date else None),
    lambda r: Demographics(sourced_id=r[0], birth_date=date.fromisoformat(r[1]) if r[1] else None),
)
CLASSES = KindTable(
    "sferum_classes",
    ("sourced_id", "title", "org_id", "class_type"),
    lambda c: (c.sourced_id, c.title, c.org_id, c.class_type.value),
    lambda r: SchoolClass(sourced_id=r[0], title=r[1], org_id=r[2], class_type=ClassType(r[3])),
)
ENROLLMENTS = KindTable(
    "sferum_enrollments",
    ("sourced_id", "class_id", "person_id", "role", "is_primary", "end_date"),
    lambda e: (
        e.sourced_id,
        e.class_id,
        e.person_id,
        e.role.value,
        int(e.primary),
        e.end_date.isoformat() if e.end_date else None,
    ),
    lambda r: Enrollment(
        sourced_id=r[0],
        class_id=r[1],
        person_id=r[2],
        role=EnrollmentRole(r[3]),
        primary=bool(r[4]),
        end_date=date.fromisoformat(r[5]) if r[5] else None,
    ),
)

KIND_TABLES: dict[str, KindTable] = {
    "orgs": ORGS,
    "people": PEOPLE,
    "demographics": DEMOGRAPHICS,
    "classes": CLASSES,
    "enrollments": ENROLLMENTS,
}
