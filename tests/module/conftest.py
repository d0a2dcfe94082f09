"""Tier 2: the module's glue with a mocked ModuleApi over a real SQLite connection."""

from __future__ import annotations

import csv
import io
import itertools
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import synapse
from synapse.api.room_versions import RoomVersions
from synapse.events import EventBase, make_event_from_dict
from synapse.module_api import ModuleApi
from twisted.internet import defer

from sferum_shared import ManualClock
from synapse_sferum.config import SferumConfig, parse_config
from synapse_sferum.module import SferumModule
from synapse_sferum.roster.oneroster import parse_roster
from synapse_sferum.service import DirectoryService
from tests.demo import ROSTER, demo_folder
from tests.sqlite_txn import Cursor

SERVER = "school.test"
# What Synapse's clock says in these tests: Monday 21 September 2026, 14:13 in Moscow.
NOW_MS = 1_790_000_000_000
TODAY = date(2026, 9, 21)
# The demo school's roster for that day; tests that change it work on a copy (`edited_roster`).
DEMO = demo_folder(ROSTER, TODAY)


# Synapse's own tables, from its full schema: the module reads a few of them (compat.py).
SYNAPSE_SCHEMA = (
    Path(synapse.__file__).parent / "storage/schema/main/full_schemas/72/full.sql.sqlite"
)


@pytest.fixture
def database() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SYNAPSE_SCHEMA.read_text())
    yield conn
    conn.close()


def make_api(conn: sqlite3.Connection) -> mock.Mock:
    api = mock.Mock(spec=ModuleApi)
    api.server_name = SERVER
    api._hs = mock.Mock()  # the HomeServer, which only compat.py reaches into
    api._hs.config.server.server_name = SERVER  # Synapse's .well-known/matrix/server reads it

    def run_db_interaction(desc: str, func: Callable[..., Any], *args: Any) -> Any:
        cursor = Cursor(conn)
        conn.execute("BEGIN")
        try:
            result = func(cursor, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        for fn, fn_args in cursor.after:
            fn(*fn_args)
        return defer.succeed(result)

    api.run_db_interaction.side_effect = run_db_interaction
    # compat.run_read_committed (DirectoryService.run_exclusive): SQLite has one writer anyway.
    db_pool = api._hs.get_datastores.return_value.main.db_pool
    db_pool.runInteraction.side_effect = lambda desc, func, *args, isolation_level=None: (
        run_db_interaction(desc, func, *args)
    )
    api.get_qualified_user_id.side_effect = lambda localpart: f"@{localpart}:{SERVER}"
    api.is_mine.side_effect = lambda user_id: user_id.endswith(f":{SERVER}")
    api.get_current_time_msec.return_value = NOW_MS
    api.should_run_background_tasks.return_value = True

    async def invalidate_cache(cached_func: Any, keys: tuple[Any, ...]) -> None:
        # Synapse streams invalidations to workers with the keys in a text column (PostgreSQL).
        assert all(isinstance(key, str) for key in keys), f"cache keys must be text: {keys!r}"
        cached_func.invalidate(keys)

    api.invalidate_cache.side_effect = invalidate_cache
    return api


@pytest.fixture
def api(database: sqlite3.Connection) -> mock.Mock:
    return make_api(database)


@pytest.fixture
def clock(api: mock.Mock) -> ManualClock:
    """The time for the module and for the mocked Synapse alike; tests move it by hand."""
    clock = ManualClock(datetime.fromtimestamp(NOW_MS / 1000, UTC))
    api.get_current_time_msec.side_effect = clock.ms
    return clock


def sferum_config(**raw: Any) -> SferumConfig:
    """The module's config for tests: no background reconciles, `raw` on top."""
    return parse_config({"admin_api_secret": "x" * 32, "provisioning": {"enabled": False}, **raw})


@pytest.fixture
def module(api: mock.Mock) -> SferumModule:
    return SferumModule(sferum_config(), api)


_event_ids = itertools.count()


def make_event(sender: str, room_id: str = "!dm:school.test", **fields: Any) -> EventBase:
    """A real Synapse event (room version 10): a text message unless `fields` say otherwise."""
    body = {
        "type": "m.room.message",
        "room_id": room_id,
        "sender": sender,
        "content": {"msgtype": "m.text", "body": "Добрый вечер!"},
        "auth_events": [],
        "prev_events": [],
        "depth": 1,
        "origin_server_ts": next(_event_ids),  # each event its own ID
        "hashes": {"sha256": "x"},
        "signatures": {},
        **fields,
    }
    return make_event_from_dict(body, RoomVersions.V10)


def uid(localpart: str) -> str:
    return f"@{localpart}:{SERVER}"


def done(value: Any) -> Any:
    """What a ModuleApi method that returns a Deferred gives back."""
    return defer.succeed(value)


async def load_demo(directory: DirectoryService, *linked: str, roster: Path = DEMO) -> None:
    """Imports the roster (the demo's unless told) and links each of `linked` to the account
    named after their person ID."""
    await directory.apply_import(parse_roster(roster, TODAY), dry_run=False)
    for person in linked:
        await directory.link(person, uid(person), None)


def edited_roster(folder: Path, edit: Callable[[str, str], str]) -> Path:
    """A copy of the demo roster in `folder`, each file's text passed through
    `edit(file name, text)`."""
    shutil.copytree(DEMO, folder)
    for f in folder.iterdir():
        f.write_text(edit(f.name, f.read_text(encoding="utf-8")), encoding="utf-8")
    return folder


def roster_without_novikova(folder: Path) -> Path:
    """The demo roster after p-5a-4 (Варвара Новикова) left the school; her father stays."""

    def edit(name: str, text: str) -> str:
        lines = text.splitlines(keepends=True)
        kept = [line for line in lines if "p-5a-4" not in line or line.startswith("g-novikov")]
        return "".join(kept).replace(",p-5a-4,,", ",,,")  # g-novikov keeps no child

    return edited_roster(folder, edit)


def roster_with_volkov_in_6b(folder: Path) -> Path:
    """The demo roster after p-5a-1 (Артём Волков) moved from 5А to 6Б."""

    def edit(name: str, text: str) -> str:
        if name != "enrollments.csv":
            return text
        return text.replace(",5a,school-1,p-5a-1,", ",6b,school-1,p-5a-1,")

    return edited_roster(folder, edit)


def roster_with_users(folder: Path, changes: Mapping[str, Mapping[str, str]]) -> Path:
    """The demo roster with cells of users.csv changed: person ID -> {column: new value}."""

    def edit(name: str, text: str) -> str:
        if name != "users.csv":
            return text
        rows = list(csv.DictReader(io.StringIO(text)))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, **changes.get(row["sourcedId"], {})} for row in rows)
        return out.getvalue()

    return edited_roster(folder, edit)
