"""One schema-version runner for every database the platform owns tables in.

The Synapse module keeps `sferum_*` tables in Synapse's database, the diary bridge `diary_*`
tables in its own; both are SQLite or PostgreSQL. Each names its tables with a prefix, lists
each version's portable DDL, and calls `upgrade_schema_txn` inside a transaction at start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Versions = Sequence[Sequence[str]]  # the statements of version 1, 2, …, applied once in order


def upgrade_schema_txn(txn: Any, prefix: str, versions: Versions, owner: str) -> int:
    """Brings `<prefix>_*` tables up to the newest version and returns it.

    `txn` is a DB-API cursor taking `?` placeholders (Synapse's, or the bridge's). A database
    newer than this code is refused (`owner`, "module" or "bridge", says whose), never downgraded.
    """
    table = f"{prefix}_schema_version"
    txn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        " singleton INTEGER PRIMARY KEY, version INTEGER NOT NULL)"
    )
    txn.execute(f"SELECT version FROM {table} WHERE singleton = 1")
    row = txn.fetchone()
    current = int(row[0]) if row else 0
    newest = len(versions)
    if current > newest:
        raise RuntimeError(
            f"the {prefix}_* tables have schema version {current}, newer than this {owner}'s "
            f"{newest}; upgrade synapse-sferum"
        )
    if current == newest:
        return newest
    for version in range(current + 1, newest + 1):
        for statement in versions[version - 1]:
            txn.execute(statement)
    txn.execute(
        f"INSERT INTO {table} (singleton, version) VALUES (1, ?)"
        " ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version",
        (newest,),
    )
    return newest
