"""The bridge's own database: SQLite by default, PostgreSQL when the deployment uses it.

One connection, used from one worker thread, so the event loop never blocks on the database
and statements never interleave. SQL uses `?` placeholders (rewritten to `%s` for PostgreSQL)
and portable DDL; tables are prefixed `diary_` and versioned in `diary_schema_version`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sferum_shared.schema import Versions, upgrade_schema_txn

T = TypeVar("T")


class Cursor:
    """What a transaction function gets: `execute` with `?` placeholders, `fetchone/fetchall`."""

    def __init__(self, raw: Any, postgres: bool):
        self._raw = raw
        self._postgres = postgres

    def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        self._raw.execute(sql.replace("?", "%s") if self._postgres else sql, tuple(args))

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._raw.fetchone()
        return tuple(row) if row is not None else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._raw.fetchall()]

    @property
    def rowcount(self) -> int:
        return int(self._raw.rowcount)


class Database:
    """`await db.run(fn, *args)` runs `fn(cursor, *args)` in one transaction."""

    def __init__(self, url: str, schema: Versions):
        """`url`: a SQLite file path, or postgresql://…; `schema`: the DDL of each version."""
        self._postgres = url.startswith(("postgresql://", "postgres://"))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diary-db")
        self._conn: Any = None
        self._url = url
        self._schema = schema

    async def open(self) -> None:
        await self._in_thread(self._connect)
        await self.run(_prepare_schema, self._schema)

    def _connect(self) -> None:
        if self._postgres:
            import psycopg2  # only deployments on PostgreSQL need it

            self._conn = psycopg2.connect(self._url)
        else:
            self._conn = sqlite3.connect(self._url, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # a kill -9 loses no commit

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._in_thread(self._transaction, fn, args)

    def _transaction(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._postgres:
            self._alive()
        raw = self._conn.cursor()
        if not self._postgres:
            raw.execute("BEGIN IMMEDIATE")
        try:
            result = fn(Cursor(raw, self._postgres), *args)
        except BaseException:
            if not self._postgres:
                raw.execute("ROLLBACK")
            elif not self._conn.closed:  # a dead connection has nothing to roll back
                self._conn.rollback()
            raise
        self._conn.commit() if self._postgres else raw.execute("COMMIT")
        return result

    def _alive(self) -> None:
        """A restart of PostgreSQL cuts every session, and psycopg2 notices only when the
        connection is next used: a ping first, and a new connection if the kept one is dead, so
        that no transaction fails for a restart that is over."""
        import psycopg2

        if not self._conn.closed:
            try:
                self._conn.cursor().execute("SELECT 1")  # the transaction's first statement
                return
            except psycopg2.OperationalError:
                if not self._conn.closed:
                    raise
        self._connect()

    async def close(self) -> None:
        if self._conn is not None:
            await self._in_thread(self._conn.close)
        self._executor.shutdown(wait=False)


def _prepare_schema(cur: Cursor, versions: Versions) -> None:
    upgrade_schema_txn(cur, "diary", versions, "bridge")
