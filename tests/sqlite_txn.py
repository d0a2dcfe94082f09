"""Synapse's LoggingTransaction, as far as the module's `*_txn` functions use it, on sqlite3.

Shared by the module tests (tier 2) and bench/roster.py, which run the real store code on a real
SQLite database without a homeserver.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any


class Cursor:
    def __init__(self, conn: sqlite3.Connection):
        self._cursor = conn.cursor()
        self.after: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.statements = 0

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        self.statements += 1
        self._cursor.execute(sql, args)

    def execute_batch(self, sql: str, args: list[tuple[Any, ...]]) -> None:
        self.statements += 1
        self._cursor.executemany(sql, args)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def description(self) -> Any:
        return self._cursor.description

    def call_after(self, fn: Callable[..., Any], *args: Any) -> None:
        self.after.append((fn, args))
