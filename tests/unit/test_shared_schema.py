"""The one schema-version runner, over SQLite as both parts use it."""

from __future__ import annotations

import sqlite3

import pytest

from sferum_shared.schema import upgrade_schema_txn

VERSIONS = (
    ("CREATE TABLE demo_a (x INTEGER)",),
    ("ALTER TABLE demo_a ADD COLUMN y TEXT", "CREATE TABLE demo_b (z TEXT)"),
)


def tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_each_version_is_applied_once_in_order() -> None:
    conn = sqlite3.connect(":memory:")
    assert upgrade_schema_txn(conn.cursor(), "demo", VERSIONS[:1], "bridge") == 1
    assert upgrade_schema_txn(conn.cursor(), "demo", VERSIONS, "bridge") == 2
    assert upgrade_schema_txn(conn.cursor(), "demo", VERSIONS, "bridge") == 2
    assert tables(conn) == {"demo_schema_version", "demo_a", "demo_b"}
    assert conn.execute("SELECT version FROM demo_schema_version").fetchall() == [(2,)]


def test_a_newer_database_is_refused_and_left_alone() -> None:
    conn = sqlite3.connect(":memory:")
    upgrade_schema_txn(conn.cursor(), "demo", VERSIONS, "bridge")
    with pytest.raises(RuntimeError, match="newer than this bridge's 1"):
        upgrade_schema_txn(conn.cursor(), "demo", VERSIONS[:1], "bridge")
    assert conn.execute("SELECT version FROM demo_schema_version").fetchall() == [(2,)]


def test_prefixes_keep_two_owners_apart() -> None:
    conn = sqlite3.connect(":memory:")
    upgrade_schema_txn(conn.cursor(), "demo", VERSIONS, "bridge")
    assert upgrade_schema_txn(conn.cursor(), "other", (), "module") == 0
    assert {"demo_schema_version", "other_schema_version"} <= tables(conn)
