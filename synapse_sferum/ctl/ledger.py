"""The diary bridge's ledger entries of one room, read for `sferumctl person export` and
`erase`'s plan, from either of the bridge's databases (SQLite or PostgreSQL).

The module never imports the bridge (docs/architecture.md), and the bridge serves no admin API,
so this is the one place outside `bridges/diary/` that reads its table, by the statement below:
`diary_posts` (`bridges/diary/ledger.py`) keeps one row per diary item, `room_id` naming the
room it was posted in. `tests/unit/test_ctl_ledger.py` reads a ledger the bridge's own code
wrote, so a change of the table there fails it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

from synapse_sferum.ctl.errors import CtlError

LEDGER_COLUMNS = ("item_key", "kind", "room_id", "event_id", "state", "updated_ts")
LEDGER_SQL = (
    f"SELECT {', '.join(LEDGER_COLUMNS)} FROM diary_posts WHERE room_id = ? ORDER BY item_key"
)
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(database: str) -> bool:
    return database.startswith(POSTGRES_SCHEMES)


def ledger_entries(database: str, room_id: str) -> list[dict[str, Any]]:
    """The entries of the room in the ledger at `database` (a SQLite path or a PostgreSQL URL,
    as the bridge's config names it); none if the ledger does not exist yet."""
    try:
        read = _postgres if is_postgres(database) else _sqlite
        rows = read(database, room_id)
    except (sqlite3.Error, _PostgresError) as e:
        where = database.split("@")[-1] if is_postgres(database) else database
        raise CtlError(f"{where}: cannot read the diary ledger: {e}".strip()) from None
    return [dict(zip(LEDGER_COLUMNS, row, strict=True)) for row in rows]


def _sqlite(path: str, room_id: str) -> list[tuple[Any, ...]]:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return []  # no file: the bridge has not run yet
    with contextlib.closing(db):
        if not _has_ledger(db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")):
            return []
        return db.execute(LEDGER_SQL, (room_id,)).fetchall()


class _PostgresError(Exception):
    """psycopg2's errors, named without importing it where SQLite is enough."""


def _postgres(url: str, room_id: str) -> list[tuple[Any, ...]]:
    import psycopg2  # only deployments on PostgreSQL need it (Synapse's own extra brings it)

    try:
        with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            if not _has_ledger(cursor.fetchall()):
                return []
            cursor.execute(LEDGER_SQL.replace("?", "%s"), (room_id,))
            return [tuple(row) for row in cursor.fetchall()]
    except psycopg2.Error as e:
        raise _PostgresError(str(e).strip()) from None


def _has_ledger(tables: Any) -> bool:
    return any(row[0] == "diary_posts" for row in tables)
