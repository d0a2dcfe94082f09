"""Transactions over account links (person ⇄ Matrix user) and school-issued initial passwords."""

from __future__ import annotations

from datetime import date
from typing import Any

from synapse_sferum.policy.cards import Card
from synapse_sferum.policy.year_end import year_end
from synapse_sferum.store.records import ENROLLMENTS

Txn = Any


def person_for_user_txn(txn: Txn, user_id: str) -> str | None:
    txn.execute("SELECT person_id FROM sferum_links WHERE user_id = ?", (user_id,))
    row = txn.fetchone()
    return row[0] if row else None


def user_for_person_txn(txn: Txn, person_id: str) -> str | None:
    txn.execute("SELECT user_id FROM sferum_links WHERE person_id = ?", (person_id,))
    row = txn.fetchone()
    return row[0] if row else None


def all_links_txn(txn: Txn) -> dict[str, str]:
    """person_id -> user_id for every linked person."""
    txn.execute("SELECT person_id, user_id FROM sferum_links")
    return {row[0]: row[1] for row in txn.fetchall()}


def link_txn(
    txn: Txn, person_id: str, user_id: str, now_ms: int, password_hash: str | None
) -> None:
    txn.execute(
        "INSERT INTO sferum_links (person_id, user_id, linked_ts) VALUES (?, ?, ?)",
        (person_id, user_id, now_ms),
    )
    if password_hash is not None:
        put_card_txn(txn, user_id, password_hash, now_ms)


def card_txn(txn: Txn, user_id: str) -> Card | None:
    txn.execute(
        "SELECT password_hash, issued_ts FROM sferum_credentials WHERE user_id = ?", (user_id,)
    )
    row = txn.fetchone()
    return Card(row[0], int(row[1])) if row else None


def put_card_txn(txn: Txn, user_id: str, password_hash: str, now_ms: int) -> None:
    """A new card for the account, replacing any earlier one."""
    forget_card_txn(txn, user_id)
    txn.execute(
        "INSERT INTO sferum_credentials (user_id, password_hash, issued_ts) VALUES (?, ?, ?)",
        (user_id, password_hash, now_ms),
    )


def forget_card_txn(txn: Txn, user_id: str) -> None:
    txn.execute("DELETE FROM sferum_credentials WHERE user_id = ?", (user_id,))


def due_departures_txn(txn: Txn, now_ms: int, grace_ms: int, today: date) -> dict[str, str]:
    """person_id -> user_id of linked people gone for at least `grace_ms`.

    Gone: left out of the roster, or every enrollment over on `today` (the school's date;
    policy/year_end.py). Notes newly gone people and forgets those who came back, so the grace
    period counts from the first import (or the first day) that left the person out.
    """
    gone = gone_people_txn(txn, today)
    txn.execute("SELECT person_id FROM sferum_departures")
    noted = {row[0] for row in txn.fetchall()}
    back = sorted(noted - gone)
    if back:
        txn.execute_batch(
            "DELETE FROM sferum_departures WHERE person_id = ?", [(p,) for p in back]
        )
    new = sorted((p, u, now_ms) for p, u in all_links_txn(txn).items() if p in gone - noted)
    if new:
        txn.execute_batch(
            "INSERT INTO sferum_departures (person_id, user_id, since_ts) VALUES (?, ?, ?)", new
        )
    txn.execute(
        "SELECT person_id, user_id FROM sferum_departures WHERE since_ts <= ?",
        (now_ms - grace_ms,),
    )
    return {row[0]: row[1] for row in txn.fetchall()}


def gone_people_txn(txn: Txn, today: date) -> set[str]:
    """Linked people not in the roster, or whose every enrollment is over on `today`."""
    txn.execute("SELECT person_id FROM sferum_links")
    linked = {row[0] for row in txn.fetchall()}
    txn.execute("SELECT sourced_id FROM sferum_people")
    present = {row[0] for row in txn.fetchall()}
    txn.execute(ENROLLMENTS.select_sql())
    state = year_end((ENROLLMENTS.from_row(tuple(row)) for row in txn.fetchall()), today)
    return (linked - present) | (linked & state.left)


def forget_departed_txn(txn: Txn, person_id: str, user_id: str) -> None:
    """After deactivation: the person's link and password go; a person who
    returns to the roster later starts afresh with a new account (and may reuse the phone)."""
    forget_card_txn(txn, user_id)
    for sql, args in (
        ("DELETE FROM sferum_links WHERE person_id = ?", (person_id,)),
        ("DELETE FROM sferum_departures WHERE person_id = ?", (person_id,)),
    ):
        txn.execute(sql, args)
