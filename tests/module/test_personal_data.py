"""The module's rows about one person (store/personal.py) on real SQLite: every table of the
schema is either held or said to be unrelated, and erasing removes exactly the erased tables'
rows about that person, nobody else's."""

from __future__ import annotations

import sqlite3

from synapse_sferum.store.personal import HELD, UNRELATED, Subject, erase_txn, rows_txn
from synapse_sferum.store.schema import prepare_schema_txn
from tests.sqlite_txn import Cursor

ME = Subject("p-1", "@me:test", "79160000001")
OTHER = Subject("p-2", "@other:test", "79160000002")


def _database() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    prepare_schema_txn(conn.cursor())
    return conn


def _fill(conn: sqlite3.Connection, subject: Subject) -> None:
    """One row per held table naming the subject (its account and phone where a column holds
    them), every other column a placeholder."""
    for held in HELD:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({held.table})")]
        key = subject.key(held.by)
        named = {"user_id": subject.user_id, "msisdn": subject.msisdn}
        values = [
            key if c in held.columns else named.get(c, f"{subject.person_id}-{c}") for c in columns
        ]
        conn.execute(f"INSERT INTO {held.table} VALUES ({', '.join('?' * len(columns))})", values)


def test_every_table_is_held_or_unrelated() -> None:
    tables = {
        r[0]
        for r in _database().execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if r[0].startswith("sferum_")
    }
    held = {h.table for h in HELD}
    assert tables == held | UNRELATED and not held & UNRELATED


def test_kept_tables_say_why() -> None:
    assert all(bool(h.why_kept) is not h.erased for h in HELD)


def test_rows_and_erase_touch_only_the_subject() -> None:
    conn = _database()
    _fill(conn, ME)
    _fill(conn, OTHER)
    cursor = Cursor(conn)
    mine = rows_txn(cursor, ME)
    assert {table: len(rows) for table, rows in mine.items()} == {h.table: 1 for h in HELD}
    assert mine["sferum_links"][0]["user_id"] == ME.user_id

    deleted = erase_txn(cursor, ME)
    assert deleted == {h.table: 1 for h in HELD if h.erased}
    left = rows_txn(cursor, ME)
    assert {t for t, rows in left.items() if rows} == {h.table for h in HELD if not h.erased}
    assert all(len(rows) == 1 for rows in rows_txn(cursor, OTHER).values())


def test_a_person_without_an_account_has_only_their_person_rows() -> None:
    conn = _database()
    _fill(conn, ME)
    found = rows_txn(Cursor(conn), Subject(ME.person_id, None, None))
    assert {t for t, rows in found.items() if rows} == {
        h.table for h in HELD if h.by.value == "person"
    }
