"""Collects roster problems so that one run reports all of them, not just the first."""

from __future__ import annotations

from collections import Counter

from sferum_shared.model import Problem, RosterError

# A broken export can be wrong on every line; past this many per file, more lines add nothing.
MAX_PER_FILE = 100


class Problems:
    """An append-only list of problems, capped per file so a bad file cannot flood the report."""

    def __init__(self) -> None:
        self._items: list[Problem] = []
        self._per_file: Counter[str] = Counter()

    def add(self, file: str, line: int, column: int, message: str) -> None:
        self._per_file[file] += 1
        count = self._per_file[file]
        if count <= MAX_PER_FILE:
            self._items.append(Problem(file, line, column, message))
        elif count == MAX_PER_FILE + 1:
            self._items.append(
                Problem(file, 0, 0, f"more than {MAX_PER_FILE} problems; the rest are not listed")
            )

    def __bool__(self) -> bool:
        return bool(self._items)

    def raise_if_any(self) -> None:
        """Raises them all, ordered by file, line and column, if there are any."""
        if self._items:
            raise RosterError(sorted(self._items, key=lambda p: (p.file, p.line, p.column)))
