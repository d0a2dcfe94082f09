"""The one clock: its forms of the time, and that nothing else reads the wall clock."""

from __future__ import annotations

import ast
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sferum_shared import Clock, ManualClock

MSK = ZoneInfo("Europe/Moscow")
REPO = Path(__file__).resolve().parents[2]


def test_a_fixed_clock_in_every_form() -> None:
    clock = Clock.fixed(datetime(2026, 12, 31, 23, 59, 30, tzinfo=MSK))
    assert clock.seconds() == 1798750770.0
    assert clock.ms() == 1798750770000
    assert clock.now() == datetime(2026, 12, 31, 20, 59, 30, tzinfo=UTC)
    assert clock.now(MSK).hour == 23
    assert clock.today(MSK) == date(2026, 12, 31)


def test_the_day_is_the_schools_not_utcs() -> None:
    # 00:30 on 1 September in Moscow is still 31 August in UTC.
    clock = Clock.fixed(datetime(2027, 9, 1, 0, 30, tzinfo=MSK))
    assert clock.today(MSK) == date(2027, 9, 1)
    assert clock.today(UTC) == date(2027, 8, 31)


def test_a_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(datetime(2026, 12, 31, 23, 59, 30, tzinfo=MSK))
    assert clock.today(MSK) == clock.today(MSK) == date(2026, 12, 31)
    clock.advance(30)
    assert clock.today(MSK) == date(2027, 1, 1)
    clock.set(datetime(2028, 2, 29, 12, tzinfo=MSK))
    assert clock.today(MSK) == date(2028, 2, 29)


def test_a_time_without_a_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        Clock.fixed(datetime(2026, 12, 7, 8, 0))


# Calls that read the wall clock: `module.function` as written in the code.
WALL_CLOCK_READS = {
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "localtime"),
    ("time", "gmtime"),
    ("time", "strftime"),
    ("time", "ctime"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
}


def wall_clock_reads(path: Path, root: Path = REPO) -> list[str]:
    """`file:line: module.function` of each wall-clock read in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in WALL_CLOCK_READS
        ):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_only_the_clock_reads_the_wall_clock() -> None:
    """Product code asks a `Clock`; `time.time` as a default argument counts as a read too."""
    found = [
        read
        for package in ("synapse_sferum", "bridges", "sfu", "sferum_shared")
        for path in sorted((REPO / package).rglob("*.py"))
        if path != REPO / "sferum_shared" / "clock.py"
        for read in wall_clock_reads(path)
    ]
    assert found == []


def test_the_guard_finds_reads(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import time\nfrom datetime import date, datetime\n"
        "def f(clock=time.time):\n    return date.today(), datetime.now()\n"
    )
    assert [read.split(": ")[1] for read in wall_clock_reads(sample, tmp_path)] == [
        "time.time",
        "date.today",
        "datetime.now",
    ]
