import sqlite3

import pytest
from synapse.storage.engines import create_engine

from synapse_sferum.store.schema import SCHEMA_LOCK_KEY, SCHEMA_VERSIONS, prepare_schema_txn


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


def test_version_9_keeps_an_upgraded_room_findable() -> None:
    from sferum_shared.rooms import RoomKey, RoomKind
    from sferum_shared.schema import upgrade_schema_txn
    from synapse_sferum.store import rooms

    conn = sqlite3.connect(":memory:")
    upgrade_schema_txn(conn.cursor(), "sferum", SCHEMA_VERSIONS[:8], "module")
    key = RoomKey(RoomKind.LESSON, "5a-eng1")
    rooms.record_room_txn(conn.cursor(), key, "!old:s")
    assert prepare_schema_txn(conn.cursor()) == len(SCHEMA_VERSIONS)
    assert rooms.replace_room_txn(conn.cursor(), key, "!old:s", "!new:s")
    assert rooms.room_id_txn(conn.cursor(), key) == "!new:s"
    assert rooms.room_key_txn(conn.cursor(), "!new:s") == key
    assert rooms.room_key_txn(conn.cursor(), "!old:s") == key  # its history keeps the rules
    # a second tombstone of the old room (or of a room not on record) changes nothing
    assert not rooms.replace_room_txn(conn.cursor(), key, "!old:s", "!other:s")
    assert rooms.room_id_txn(conn.cursor(), key) == "!new:s"


def test_version_10_keeps_enrollments_and_reads_their_end() -> None:
    from datetime import date

    from sferum_shared.schema import upgrade_schema_txn
    from synapse_sferum.store import directory

    conn = sqlite3.connect(":memory:")
    upgrade_schema_txn(conn.cursor(), "sferum", SCHEMA_VERSIONS[:9], "module")
    conn.execute(
        "INSERT INTO sferum_enrollments (sourced_id, class_id, person_id, role, is_primary)"
        " VALUES ('e1', '5a', 'p1', 'student', 0)"
    )
    assert prepare_schema_txn(conn.cursor()) == len(SCHEMA_VERSIONS)
    [before] = directory.load_snapshot_txn(conn.cursor()).enrollments.values()
    assert before.end_date is None  # enrollments imported earlier never end
    conn.execute("UPDATE sferum_enrollments SET end_date = '2027-06-01'")
    [after] = directory.load_snapshot_txn(conn.cursor()).enrollments.values()
    assert after.end_date == date(2027, 6, 1)


def test_version_11_remembers_an_article_by_its_key() -> None:
    from sferum_shared.schema import upgrade_schema_txn
    from synapse_sferum.store.articles import PostedArticle, article_txn, record_article_txn

    conn = sqlite3.connect(":memory:")
    upgrade_schema_txn(conn.cursor(), "sferum", SCHEMA_VERSIONS[:10], "module")
    assert prepare_schema_txn(conn.cursor()) == len(SCHEMA_VERSIONS)
    assert article_txn(conn.cursor(), "school-1", "concert") is None
    first = PostedArticle("!news:s", "$first", "@staff:s", 1, "h1")
    record_article_txn(conn.cursor(), "school-1", "concert", first)
    assert article_txn(conn.cursor(), "school-1", "concert") == first
    assert article_txn(conn.cursor(), "school-2", "concert") is None
    again = PostedArticle("!news:s", "$again", "@staff:s", 2, "h2")
    record_article_txn(conn.cursor(), "school-1", "concert", again)
    assert article_txn(conn.cursor(), "school-1", "concert") == again


class _RecordingTxn:
    """What prepare_schema_txn sends, on Synapse's PostgreSQL engine, before the tables."""

    def __init__(self) -> None:
        self.database_engine = create_engine({"name": "psycopg2", "args": {}})
        self.statements: list[tuple[str, tuple[object, ...]]] = []

    def execute(self, sql: str, args: tuple[object, ...] = ()) -> None:
        self.statements.append((sql, args))
        if sql.startswith("SELECT version"):
            raise _Stop


class _Stop(Exception):
    pass


def test_workers_take_turns_preparing_the_schema_on_postgresql() -> None:
    """Every Synapse process prepares the tables when it first needs them; on PostgreSQL two at
    once would both CREATE TABLE, so each takes the deployment's advisory lock first."""
    txn = _RecordingTxn()
    with pytest.raises(_Stop):
        prepare_schema_txn(txn)
    assert txn.statements[0] == ("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK_KEY,))
    assert txn.statements[1][0].startswith("CREATE TABLE IF NOT EXISTS sferum_schema_version")
