import sqlite3

import pytest

from synapse_sferum.store.schema import SCHEMA_VERSIONS, prepare_schema_txn


def test_schema_is_created_once_and_versioned() -> None:
    conn = sqlite3.connect(":memory:")
    assert prepare_schema_txn(conn.cursor()) == len(SCHEMA_VERSIONS)
    assert prepare_schema_txn(conn.cursor()) == len(SCHEMA_VERSIONS)
    rows = conn.execute("SELECT singleton, version FROM sferum_schema_version").fetchall()
    assert rows == [(1, len(SCHEMA_VERSIONS))]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert all(t.startswith("sferum_") for t in tables)


def test_a_newer_database_is_refused() -> None:
    conn = sqlite3.connect(":memory:")
    prepare_schema_txn(conn.cursor())
    conn.execute("UPDATE sferum_schema_version SET version = 99")
    with pytest.raises(RuntimeError, match="newer than this module"):
        prepare_schema_txn(conn.cursor())
