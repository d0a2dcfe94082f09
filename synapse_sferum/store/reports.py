"""Transactions over how far the platform has read Synapse's reports."""

from __future__ import annotations

from typing import Any

Txn = Any

EVENT_REPORTS = "event_reports"  # the one stream of reports read so far


def report_mark_txn(txn: Txn, stream: str) -> int | None:
    """The id of the last report handled; None before the first reading."""
    txn.execute("SELECT last_id FROM sferum_report_marks WHERE stream = ?", (stream,))
    row = txn.fetchone()
    return int(row[0]) if row else None


def set_report_mark_txn(txn: Txn, stream: str, last_id: int) -> None:
    txn.execute(
        "INSERT INTO sferum_report_marks (stream, last_id) VALUES (?, ?)"
        " ON CONFLICT (stream) DO UPDATE SET last_id = excluded.last_id",
        (stream, last_id),
    )
