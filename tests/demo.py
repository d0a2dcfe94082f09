"""The demo school's roster and diary for tests, rendered from `synapse_sferum/demo` for a day.

Unit and module tests pin the day (their own `TODAY`), so what they assert never depends on the
date they run. Integration tests talk to real processes that read the real clock, so they take
the demo for the real day (`today()`): the data moves with the calendar exactly as the demo's.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import zoneinfo
from datetime import date, datetime, time
from pathlib import Path

from sferum_shared import SYSTEM_CLOCK, Clock
from synapse_sferum.ctl.demo import DEMO_TIMEZONE, DIARY, ROSTER, demo_files, write_files

__all__ = ["DIARY", "ROSTER", "demo_files", "demo_folder", "noon", "today"]


def today() -> date:
    """The real date where the demo school is: what the real processes under test see."""
    return SYSTEM_CLOCK.today(zoneinfo.ZoneInfo(DEMO_TIMEZONE))


def noon(day: date) -> Clock:
    """A clock stopped at noon of `day` where the demo school is."""
    return Clock.fixed(datetime.combine(day, time(12), zoneinfo.ZoneInfo(DEMO_TIMEZONE)))


@functools.cache
def _scratch() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="sferum-demo-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def demo_folder(part: str, day: date) -> Path:
    """A folder with the demo's `roster` or `diary` for `day`, written once per test run.

    Tests must not change it (copy it first): other tests read the same folder.
    """
    return write_files(_scratch() / f"{part}-{day.isoformat()}", demo_files(part, day))
