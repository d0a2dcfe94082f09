"""Transactions over account links (person ⇄ Matrix user) and school-issued initial passwords."""

from __future__ import annotations

from typing import Any

from synapse_sferum.policy.cards import Card

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


def due_departures_txn(txn: Txn, now_ms: int, grace_ms: int) -> dict[str, str]:
    """person_id -> user_id of linked people gone from the roster for at least `grace_ms`.

    Notes newly gone people and forgets those who came back, so the grace period counts from
    the first import that left the person out.
    """
    txn.execute(
        "DELETE FROM sferum_departures WHERE person_id IN (SELECT sourced_id FROM sferum_people)"
    )
    txn.execute(
        "INSERT INTO sferum_departures (person_id, user_id, since_ts)"
        " SELECT l.person_id, l.user_id, ? FROM sferum_links l"
        " WHERE l.person_id NOT IN (SELECT sourced_id FROM sferum_people)"
        " AND l.person_id NOT IN (SELECT person_id FROM sferum_departures)",
        (now_ms,),
    )
    txn.execute(
        "SELECT person_id, user_id FROM sferum_departures WHERE since_ts <= ?",
        (now_ms - grace_ms,),
    )
    return {row[0]: row[1] for row in txn.fetchall()}


def forget_departed_txn(txn: Txn, person_id: str, user_id: str) -> None:
    """After deactivation: the person's link and password go; a person who
    returns to the roster later starts afresh with a new account (and may reuse the phone)."""
    forget_card_txn(txn, user_id)
    for sql, args in (
        ("DELETE FROM sferum_links WHERE person_id = ?", (person_id,)),
        ("DELETE FROM sferum_departures WHERE person_id = ?", (person_id,)),
    ):
        txn.execute(sql, args)
