"""Transactions over the school directory tables: roster imports and per-person lookups.

Each `*_txn` function runs inside one `run_db_interaction`, so an import either lands whole or
changes nothing. Only rows that differ are written: an unchanged re-import writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from sferum_shared.model import (
    RECORD_KINDS,
    Demographics,
    EnrollmentRole,
    ImportReport,
    Member,
    RosterImport,
)
from synapse_sferum.directory import build_member, guardianship_pairs
from synapse_sferum.policy.year_end import enrollment_over, has_left
from synapse_sferum.roster.merge import DirectorySnapshot, diff, merge
from synapse_sferum.store.records import DEMOGRAPHICS, KIND_TABLES, PEOPLE

Txn = Any  # synapse.storage.database.LoggingTransaction, or a test double with the same methods


def load_snapshot_txn(txn: Txn) -> DirectorySnapshot:
    kinds: dict[str, dict[str, Any]] = {}
    for kind in RECORD_KINDS:
        table = KIND_TABLES[kind]
        txn.execute(table.select_sql())
        kinds[kind] = {row[0]: table.from_row(tuple(row)) for row in txn.fetchall()}
    return DirectorySnapshot(**kinds)


def apply_import_txn(txn: Txn, change: RosterImport, dry_run: bool) -> ImportReport:
    """Merges an import into the stored directory; a RosterError leaves it untouched."""
    current = load_snapshot_txn(txn)
    updated = merge(current, change)
    changes = diff(current, updated)
    report = ImportReport(counts=changes.counts(), changed_person_ids=changes.changed_person_ids())
    if dry_run or not report.wrote_anything:
        return report
    for kind in RECORD_KINDS:
        table = KIND_TABLES[kind]
        records = getattr(updated, kind)
        kind_changes = changes.kind(kind)
        if kind_changes.deleted:
            txn.execute_batch(table.delete_sql(), [(i,) for i in sorted(kind_changes.deleted)])
        if kind_changes.updated:
            rows = [table.update_args(records[i]) for i in sorted(kind_changes.updated)]
            txn.execute_batch(table.update_sql(), rows)
        if kind_changes.created:
            rows = [table.to_row(records[i]) for i in sorted(kind_changes.created)]
            txn.execute_batch(table.insert_sql(), rows)
    _write_guardianships_txn(txn, guardianship_pairs(updated.people))
    return report


def _write_guardianships_txn(txn: Txn, wanted: set[tuple[str, str]]) -> None:
    txn.execute("SELECT guardian_id, student_id FROM sferum_guardianships")
    stored = {(row[0], row[1]) for row in txn.fetchall()}
    gone = sorted(stored - wanted)
    new = sorted(wanted - stored)
    if gone:
        txn.execute_batch(
            "DELETE FROM sferum_guardianships WHERE guardian_id = ? AND student_id = ?", gone
        )
    if new:
        txn.execute_batch(
            "INSERT INTO sferum_guardianships (guardian_id, student_id) VALUES (?, ?)", new
        )


def _column(txn: Txn, sql: str, args: Iterable[Any]) -> list[str]:
    txn.execute(sql, tuple(args))
    return [row[0] for row in txn.fetchall()]


def _class_ids_txn(txn: Txn, person_ids: list[str], role: EnrollmentRole, today: date) -> set[str]:
    """Classes where any of these people is enrolled in that role and the enrollment is not
    over on `today`, in one query."""
    if not person_ids:
        return set()
    marks = ", ".join("?" for _ in person_ids)
    txn.execute(
        f"SELECT class_id, end_date FROM sferum_enrollments"
        f" WHERE role = ? AND person_id IN ({marks})",
        (role.value, *person_ids),
    )
    return {row[0] for row in txn.fetchall() if not enrollment_over(_day(row[1]), today)}


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def has_left_txn(txn: Txn, person_id: str, today: date) -> bool:
    """Whether every enrollment of the person is over on `today` (policy/year_end.py)."""
    ends = _column(
        txn, "SELECT end_date FROM sferum_enrollments WHERE person_id = ?", (person_id,)
    )
    return has_left(map(_day, ends), today)


def member_for_person_txn(txn: Txn, person_id: str, today: date, adult_age: int) -> Member | None:
    """Everything the rules need about one person, in a handful of indexed queries; None for
    a person not in the roster, disabled there, or whose enrollments are all over."""
    txn.execute(f"{PEOPLE.select_sql()} WHERE sourced_id = ?", (person_id,))
    row = txn.fetchone()
    if row is None:
        return None
    person = PEOPLE.from_row(tuple(row))
    if not person.enabled or has_left_txn(txn, person_id, today):
        return None
    txn.execute(f"{DEMOGRAPHICS.select_sql()} WHERE sourced_id = ?", (person_id,))
    demo_row = txn.fetchone()
    demographics: Demographics | None = (
        DEMOGRAPHICS.from_row(tuple(demo_row)) if demo_row else None
    )
    child_ids = _column(
        txn, "SELECT student_id FROM sferum_guardianships WHERE guardian_id = ?", (person_id,)
    )
    return build_member(
        person,
        birth_date=demographics.birth_date if demographics else None,
        student_class_ids=_class_ids_txn(txn, [person_id], EnrollmentRole.STUDENT, today),
        teacher_class_ids=_class_ids_txn(txn, [person_id], EnrollmentRole.TEACHER, today),
        child_ids=child_ids,
        child_class_ids=_class_ids_txn(txn, child_ids, EnrollmentRole.STUDENT, today),
        guardian_ids=_column(
            txn, "SELECT guardian_id FROM sferum_guardianships WHERE student_id = ?", (person_id,)
        ),
        today=today,
        adult_age=adult_age,
    )
