"""The durable map from a diary item to the Matrix event that shows it (exactly once).

Every change goes through an intent row written *before* the request and completed after it:

* `sending`: a new message is on its way, with a transaction ID derived from (key, hash);
* `editing`: an `m.replace` edit to `pending_hash` is on its way (same derivation);
* `sent`: the room shows `content_hash`;
* `redacting` / `redacted`: the item was deleted at the source.

After a crash, an intent row is finished by first looking for the event in the room (every
message carries its key and hash), and only if it is not there by sending again with the same
transaction ID, which Synapse also de-duplicates while it remembers it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import attrs

SENDING, EDITING, SENT, REDACTING, REDACTED = "sending", "editing", "sent", "redacting", "redacted"

LEDGER_SCHEMA: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS diary_posts ("
    " item_key TEXT PRIMARY KEY, kind TEXT NOT NULL, room_id TEXT NOT NULL,"
    " event_id TEXT, content_hash TEXT, pending_hash TEXT, state TEXT NOT NULL,"
    " updated_ts BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS diary_posts_state ON diary_posts (state)",
    "CREATE TABLE IF NOT EXISTS diary_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


@attrs.frozen
class Entry:
    item_key: str
    kind: str
    room_id: str
    event_id: str | None
    content_hash: str | None
    pending_hash: str | None
    state: str


def txn_id(item_key: str, content_hash: str, action: str = "send") -> str:
    """Deterministic: a retry of the same change reuses the same transaction ID."""
    digest = hashlib.sha256(f"{action}\0{item_key}\0{content_hash}".encode()).hexdigest()
    return f"diary-{digest[:40]}"


_COLUMNS = "item_key, kind, room_id, event_id, content_hash, pending_hash, state"


def all_entries_txn(cur: Any) -> dict[str, Entry]:
    cur.execute(f"SELECT {_COLUMNS} FROM diary_posts")
    return {row[0]: Entry(*row) for row in cur.fetchall()}


def begin_send_txn(
    cur: Any, key: str, kind: str, room_id: str, content_hash: str, now: int
) -> None:
    cur.execute(
        f"INSERT INTO diary_posts ({_COLUMNS}, updated_ts) VALUES (?, ?, ?, NULL, NULL, ?, ?, ?)",
        (key, kind, room_id, content_hash, SENDING, now),
    )


def begin_edit_txn(cur: Any, key: str, content_hash: str, now: int) -> None:
    cur.execute(
        "UPDATE diary_posts SET pending_hash = ?, state = ?, updated_ts = ? WHERE item_key = ?",
        (content_hash, EDITING, now, key),
    )


def finish_txn(cur: Any, key: str, event_id: str | None, now: int) -> None:
    """The send or edit in flight is done: the room shows the pending hash."""
    cur.execute(
        "UPDATE diary_posts SET event_id = COALESCE(event_id, ?), content_hash = pending_hash,"
        " pending_hash = NULL, state = ?, updated_ts = ? WHERE item_key = ?",
        (event_id, SENT, now, key),
    )


def mark_txn(cur: Any, key: str, state: str, now: int) -> None:
    cur.execute(
        "UPDATE diary_posts SET state = ?, updated_ts = ? WHERE item_key = ?", (state, now, key)
    )


def forget_txn(cur: Any, key: str) -> None:
    """A new message never went out (no room for it after all): as if never begun."""
    cur.execute("DELETE FROM diary_posts WHERE item_key = ? AND state = ?", (key, SENDING))


def drop_txn(cur: Any, key: str) -> None:
    """The item starts afresh (it came back after a redaction, or its room changed)."""
    cur.execute("DELETE FROM diary_posts WHERE item_key = ?", (key,))


UNFINISHED = (SENDING, EDITING, REDACTING)


def unfinished_txn(cur: Any) -> tuple[int, int | None]:
    """How many intents are not finished yet, and when the oldest was written (ms)."""
    cur.execute(
        "SELECT COUNT(*), MIN(updated_ts) FROM diary_posts WHERE state IN (?, ?, ?)", UNFINISHED
    )
    count, oldest = cur.fetchone()
    return int(count), None if oldest is None else int(oldest)


def get_meta_txn(cur: Any, name: str) -> str | None:
    cur.execute("SELECT value FROM diary_meta WHERE name = ?", (name,))
    row = cur.fetchone()
    return str(row[0]) if row else None


def set_meta_txn(cur: Any, name: str, value: str) -> None:
    cur.execute(
        "INSERT INTO diary_meta (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        (name, value),
    )
