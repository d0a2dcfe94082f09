"""The interface every diary source implements."""

from __future__ import annotations

from typing import Protocol

from bridges.diary.model import DiarySnapshot


class Source(Protocol):
    @property
    def name(self) -> str:
        """`kind:location`, as configured; used in logs, problems and metrics."""

    async def snapshot(self) -> DiarySnapshot:
        """Everything the source holds now. Bad items become `problems`, never exceptions;
        a source that cannot be read at all raises `SourceUnavailable`."""

    async def changed(self) -> bool:
        """Cheap check whether a new snapshot may differ (file mtimes, a push arrived)."""


class SourceUnavailable(Exception):
    """The source could not be read (missing folder, HTTP error, timeout): nothing is known,
    so nothing is deleted; the bridge retries at the next interval."""
