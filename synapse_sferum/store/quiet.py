"""Transactions of quiet hours: teachers' schedules, whose pushes are silenced, notices sent."""

from __future__ import annotations

from typing import Any

Txn = Any


def set_schedule_txn(txn: Txn, user_id: str, schedule_json: str, now_ms: int) -> None:
    txn.execute(
        "INSERT INTO sferum_quiet_schedules (user_id, schedule, updated_ts) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id) DO UPDATE"
        " SET schedule = EXCLUDED.schedule, updated_ts = EXCLUDED.updated_ts",
        (user_id, schedule_json, now_ms),
    )


def delete_schedule_txn(txn: Txn, user_id: str) -> None:
    txn.execute("DELETE FROM sferum_quiet_schedules WHERE user_id = ?", (user_id,))


def schedule_txn(txn: Txn, user_id: str) -> str | None:
    txn.execute("SELECT schedule FROM sferum_quiet_schedules WHERE user_id = ?", (user_id,))
    row = txn.fetchone()
    return str(row[0]) if row else None


def all_schedules_txn(txn: Txn) -> dict[str, str]:
    """user_id -> schedule (JSON account data) of everyone with quiet hours switched on."""
    txn.execute("SELECT user_id, schedule FROM sferum_quiet_schedules")
    return {row[0]: row[1] for row in txn.fetchall()}


def silenced_users_txn(txn: Txn) -> set[str]:
    txn.execute("SELECT user_id FROM sferum_quiet_silenced")
    return {row[0] for row in txn.fetchall()}


def mark_silenced_txn(txn: Txn, user_id: str, now_ms: int) -> None:
    txn.execute(
        "INSERT INTO sferum_quiet_silenced (user_id, since_ts) VALUES (?, ?)"
        " ON CONFLICT (user_id) DO NOTHING",
        (user_id, now_ms),
    )


def unmark_silenced_txn(txn: Txn, user_id: str) -> None:
    txn.execute("DELETE FROM sferum_quiet_silenced WHERE user_id = ?", (user_id,))


def claim_notice_txn(
    txn: Txn, room_id: str, user_id: str, period_start_ms: int, now_ms: int
) -> bool:
    """Reserves the one notice of a conversation and quiet period; False if already taken.

    The primary key decides, so two workers or a retried notification cannot both win.
    """
    txn.execute(
        "INSERT INTO sferum_quiet_notices (room_id, user_id, period_start_ts, sent_ts)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (room_id, user_id, period_start_ts) DO NOTHING",
        (room_id, user_id, period_start_ms, now_ms),
    )
    return bool(txn.rowcount == 1)


def prune_notices_txn(txn: Txn, before_ms: int) -> None:
    txn.execute("DELETE FROM sferum_quiet_notices WHERE sent_ts < ?", (before_ms,))
