"""`sferumctl person`'s read of the diary bridge's ledger, against a ledger the bridge's own code
wrote (SQLite here; PostgreSQL in tests/integration/test_diary_bridge.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bridges.diary.ledger import LEDGER_SCHEMA, begin_send_txn, finish_txn
from synapse_sferum.ctl.errors import CtlError
from synapse_sferum.ctl.ledger import ledger_entries


def bridge_ledger(path: Path) -> None:
    db = sqlite3.connect(path)
    for statement in LEDGER_SCHEMA:
        db.execute(statement)
    cur = db.cursor()
    begin_send_txn(cur, "mark:2", "mark", "!diary-a:s", "h2", 20)
    finish_txn(cur, "mark:2", "$m2", 21)
    begin_send_txn(cur, "mark:1", "mark", "!diary-a:s", "h1", 10)  # still on its way
    begin_send_txn(cur, "mark:3", "mark", "!diary-b:s", "h3", 30)  # another pupil's
    db.commit()
    db.close()


def test_the_entries_of_one_diary_room(tmp_path: Path) -> None:
    path = tmp_path / "diary.db"
    bridge_ledger(path)
    assert ledger_entries(str(path), "!diary-a:s") == [
        {
            "item_key": "mark:1",
            "kind": "mark",
            "room_id": "!diary-a:s",
            "event_id": None,
            "state": "sending",
            "updated_ts": 10,
        },
        {
            "item_key": "mark:2",
            "kind": "mark",
            "room_id": "!diary-a:s",
            "event_id": "$m2",
            "state": "sent",
            "updated_ts": 21,
        },
    ]
    assert ledger_entries(str(path), "!nobody:s") == []


def test_a_bridge_that_never_ran_has_no_entries(tmp_path: Path) -> None:
    assert ledger_entries(str(tmp_path / "missing.db"), "!diary-a:s") == []
    sqlite3.connect(tmp_path / "empty.db").close()
    assert ledger_entries(str(tmp_path / "empty.db"), "!diary-a:s") == []


def test_a_broken_ledger_is_named(tmp_path: Path) -> None:
    path = tmp_path / "diary.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(CtlError, match=f"{path}: cannot read the diary ledger"):
        ledger_entries(str(path), "!diary-a:s")


def test_a_postgresql_ledger_that_cannot_be_reached_is_named_without_its_password() -> None:
    url = "postgresql://diary:s3cret@127.0.0.1:1/diary"
    with pytest.raises(CtlError) as raised:
        ledger_entries(url, "!diary-a:s")
    message = raised.value.message
    assert message.startswith("127.0.0.1:1/diary: cannot read the diary ledger") and (
        "s3cret" not in message
    )
