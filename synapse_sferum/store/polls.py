"""Transactions over polls in provisioned rooms and their votes."""

from __future__ import annotations

import json
from typing import Any

from synapse_sferum.policy.polls import PollRecord, Vote

Txn = Any


def record_poll_txn(
    txn: Txn, record: PollRecord, content: dict[str, Any]
) -> None:
    """Remembers a poll that started (again and again the same: a retried notification)."""
    txn.execute(
        "INSERT INTO sferum_polls (event_id, room_id, origin_id, creator, content, ended_ts)"
        " VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT (event_id) DO NOTHING",
        (
            record.event_id,
            record.room_id,
            record.origin_id,
            record.creator,
            json.dumps(content, ensure_ascii=False),
        ),
    )


def poll_txn(txn: Txn, event_id: str) -> tuple[PollRecord, dict[str, Any], int | None] | None:
    """A poll the platform saw start, its start event's content, and when it ended."""
    txn.execute(
        "SELECT room_id, origin_id, creator, content, ended_ts FROM sferum_polls"
        " WHERE event_id = ?",
        (event_id,),
    )
    row = txn.fetchone()
    if row is None:
        return None
    return PollRecord(event_id, row[0], row[1], row[2]), json.loads(row[3]), row[4]


def copies_txn(txn: Txn, origin_id: str) -> list[PollRecord]:
    """The poll and every copy of it, each in its own room."""
    txn.execute(
        "SELECT event_id, room_id, creator FROM sferum_polls WHERE origin_id = ?"
        " ORDER BY event_id",
        (origin_id,),
    )
    return [PollRecord(row[0], row[1], origin_id, row[2]) for row in txn.fetchall()]


def record_vote_txn(txn: Txn, origin_id: str, vote: Vote) -> None:
    """Keeps each voter's latest response to a poll that has not ended by the response's time."""
    txn.execute(
        "SELECT ended_ts FROM sferum_polls WHERE event_id = ?", (origin_id,)
    )
    row = txn.fetchone()
    if row is None or (row[0] is not None and row[0] <= vote.ts):
        return
    txn.execute(
        "SELECT ts, event_id FROM sferum_poll_votes WHERE origin_id = ? AND voter = ?",
        (origin_id, vote.voter),
    )
    held = txn.fetchone()
    if held is not None and (held[0], held[1]) >= (vote.ts, vote.event_id):
        return
    txn.execute(
        "DELETE FROM sferum_poll_votes WHERE origin_id = ? AND voter = ?",
        (origin_id, vote.voter),
    )
    txn.execute(
        "INSERT INTO sferum_poll_votes (origin_id, voter, answers, ts, event_id)"
        " VALUES (?, ?, ?, ?, ?)",
        (origin_id, vote.voter, json.dumps(list(vote.answer_ids)), vote.ts, vote.event_id),
    )


def end_poll_txn(txn: Txn, origin_id: str, ended_ts: int) -> list[Vote] | None:
    """Ends a poll once: the votes that count, or None if it had ended already."""
    txn.execute(
        "UPDATE sferum_polls SET ended_ts = ? WHERE event_id = ? AND ended_ts IS NULL",
        (ended_ts, origin_id),
    )
    if txn.rowcount != 1:
        return None
    # Votes sent before the end but seen after it (a slow worker) must not count.
    txn.execute(
        "SELECT voter, answers, ts, event_id FROM sferum_poll_votes"
        " WHERE origin_id = ? AND ts < ?",
        (origin_id, ended_ts),
    )
    return [Vote(row[0], tuple(json.loads(row[1])), row[2], row[3]) for row in txn.fetchall()]
