"""Tier 2: the module's glue with a mocked ModuleApi over a real SQLite connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import synapse
from synapse.module_api import ModuleApi
from twisted.internet import defer

from synapse_sferum.config import parse_config
from synapse_sferum.module import SferumModule
from tests.sqlite_txn import Cursor

SERVER = "school.test"
# What Synapse's clock says in these tests: Monday 21 September 2026, 14:13 in Moscow.
NOW_MS = 1_790_000_000_000
TODAY = date(2026, 9, 21)


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
def module(api: mock.Mock) -> SferumModule:
    config = parse_config({"admin_api_secret": "x" * 32, "provisioning": {"enabled": False}})
    return SferumModule(config, api)
