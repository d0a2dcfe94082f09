"""Transactions over provisioned rooms, their planned members and mirrored school news."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sferum_shared.rooms import RoomKey, RoomKind
from synapse_sferum.policy.year_end import year_end
from synapse_sferum.store.records import ENROLLMENTS

Txn = Any


def room_id_txn(txn: Txn, key: RoomKey) -> str | None:
    txn.execute(
        "SELECT room_id FROM sferum_rooms WHERE kind = ? AND scope_id = ?",
        (key.kind.value, key.scope_id),
    )
    row = txn.fetchone()
    return row[0] if row else None


def room_key_txn(txn: Txn, room_id: str) -> RoomKey | None:
    """The key of a provisioned room, or of one the platform upgraded (its history stays)."""
    txn.execute(
        "SELECT kind, scope_id FROM sferum_rooms WHERE room_id = ?"
        " UNION ALL SELECT kind, scope_id FROM sferum_replaced_rooms WHERE room_id = ?",
        (room_id, room_id),
    )
    row = txn.fetchone()
    return RoomKey(RoomKind(row[0]), row[1]) if row else None


def replace_room_txn(txn: Txn, key: RoomKey, old_room_id: str, new_room_id: str) -> bool:
    """Makes `new_room_id` the key's room if `old_room_id` still is; False if it was not."""
    txn.execute(
        "UPDATE sferum_rooms SET room_id = ? WHERE kind = ? AND scope_id = ? AND room_id = ?",
        (new_room_id, key.kind.value, key.scope_id, old_room_id),
    )
    if txn.rowcount != 1:
        return False
    txn.execute(
        "INSERT INTO sferum_replaced_rooms (room_id, kind, scope_id, replacement_id)"
        " VALUES (?, ?, ?, ?)",
        (old_room_id, key.kind.value, key.scope_id, new_room_id),
    )
    return True


def record_room_txn(txn: Txn, key: RoomKey, room_id: str) -> None:
    txn.execute(
        "INSERT INTO sferum_rooms (kind, scope_id, room_id) VALUES (?, ?, ?)",
        (key.kind.value, key.scope_id, room_id),
    )


def rooms_of_kind_txn(txn: Txn, kind: RoomKind) -> dict[str, str]:
    """scope_id -> room_id for every provisioned room of that kind."""
    txn.execute("SELECT scope_id, room_id FROM sferum_rooms WHERE kind = ?", (kind.value,))
    return {row[0]: row[1] for row in txn.fetchall()}


def planned_members_txn(txn: Txn, room_id: str) -> frozenset[str]:
    txn.execute("SELECT user_id FROM sferum_room_members WHERE room_id = ?", (room_id,))
    return frozenset(row[0] for row in txn.fetchall())


def set_planned_members_txn(txn: Txn, room_id: str, members: Iterable[str]) -> bool:
    """Stores the plan's members for a room; returns whether anything changed."""
    wanted = frozenset(members)
    stored = planned_members_txn(txn, room_id)
    gone = sorted(stored - wanted)
    new = sorted(wanted - stored)
    if gone:
        txn.execute_batch(
            "DELETE FROM sferum_room_members WHERE room_id = ? AND user_id = ?",
            [(room_id, u) for u in gone],
        )
    if new:
        txn.execute_batch(
            "INSERT INTO sferum_room_members (room_id, user_id) VALUES (?, ?)",
            [(room_id, u) for u in new],
        )
    return bool(gone or new)


def claim_mirror_txn(txn: Txn, source_event_id: str, target_room_id: str) -> bool:
    """Reserves one mirror of a post in one room; False if another run already did it."""
    txn.execute(
        "SELECT 1 FROM sferum_mirrors WHERE source_event_id = ? AND target_room_id = ?",
        (source_event_id, target_room_id),
    )
    if txn.fetchone():
        return False
    txn.execute(
        "INSERT INTO sferum_mirrors (source_event_id, target_room_id, target_event_id)"
        " VALUES (?, ?, NULL)",
        (source_event_id, target_room_id),
    )
    return True


def set_mirror_event_txn(
    txn: Txn, source_event_id: str, target_room_id: str, target_event_id: str
) -> None:
    txn.execute(
        "UPDATE sferum_mirrors SET target_event_id = ?"
        " WHERE source_event_id = ? AND target_room_id = ?",
        (target_event_id, source_event_id, target_room_id),
    )


def mirrors_of_txn(txn: Txn, source_event_id: str) -> dict[str, str]:
    """target_room_id -> target_event_id for every delivered mirror of a post."""
    txn.execute(
        "SELECT target_room_id, target_event_id FROM sferum_mirrors"
        " WHERE source_event_id = ? AND target_event_id IS NOT NULL",
        (source_event_id,),
    )
    return {row[0]: row[1] for row in txn.fetchall()}


def copies_among_txn(txn: Txn, room_id: str, event_ids: Sequence[str]) -> set[str]:
    """Which of a room's events are the platform's copies of school news (pins change rarely,
    so the scan over the room's mirrors needs no index of its own)."""
    if not event_ids:
        return set()
    marks = ", ".join("?" for _ in event_ids)
    txn.execute(
        "SELECT target_event_id FROM sferum_mirrors"
        f" WHERE target_room_id = ? AND target_event_id IN ({marks})",
        (room_id, *event_ids),
    )
    return {row[0] for row in txn.fetchall()}


def class_ids_of_org_txn(txn: Txn, org_id: str) -> list[str]:
    txn.execute("SELECT sourced_id FROM sferum_classes WHERE org_id = ?", (org_id,))
    return [row[0] for row in txn.fetchall()]


def running_class_ids_of_org_txn(txn: Txn, org_id: str, today: date) -> list[str]:
    """The school's classes that are not archived on `today` (policy/year_end.py)."""
    class_ids = class_ids_of_org_txn(txn, org_id)
    txn.execute(
        f"{ENROLLMENTS.select_sql()} WHERE class_id IN"
        " (SELECT sourced_id FROM sferum_classes WHERE org_id = ?)",
        (org_id,),
    )
    rows = txn.fetchall()
    archived = year_end((ENROLLMENTS.from_row(tuple(row)) for row in rows), today).archived
    return [c for c in class_ids if c not in archived]


def all_rooms_txn(txn: Txn) -> dict[RoomKey, str]:
    txn.execute("SELECT kind, scope_id, room_id FROM sferum_rooms")
    return {RoomKey(RoomKind(row[0]), row[1]): row[2] for row in txn.fetchall()}


def is_done_txn(txn: Txn, task: str) -> bool:
    txn.execute("SELECT 1 FROM sferum_done WHERE task = ?", (task,))
    return txn.fetchone() is not None


def mark_done_txn(txn: Txn, task: str, now_ms: int) -> None:
    txn.execute(
        "INSERT INTO sferum_done (task, done_ts) VALUES (?, ?) ON CONFLICT (task) DO NOTHING",
        (task, now_ms),
    )


def note_media_txn(txn: Txn, room_id: str, media_ids: set[str]) -> None:
    for media_id in sorted(media_ids):
        txn.execute(
            "INSERT INTO sferum_media_rooms (media_id, room_id) VALUES (?, ?)"
            " ON CONFLICT (media_id, room_id) DO NOTHING",
            (media_id, room_id),
        )
