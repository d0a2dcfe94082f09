"""Transactions over account links (person ⇄ Matrix user) and school-issued initial passwords."""

from __future__ import annotations

from typing import Any

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
        txn.execute(
            "INSERT INTO sferum_credentials (user_id, password_hash) VALUES (?, ?)",
            (user_id, password_hash),
        )


def password_hash_txn(txn: Txn, user_id: str) -> str | None:
    txn.execute("SELECT password_hash FROM sferum_credentials WHERE user_id = ?", (user_id,))
    row = txn.fetchone()
    return row[0] if row else None
