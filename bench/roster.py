#!/usr/bin/env python3
"""Measures a district roster import (target: 50 schools × 1,000 pupils in ≤ 60 s within 1 GiB).

tests/district.py writes the district (≈125,000 people by default) into a temporary folder.
Then, each in a fresh Python process so that its peak RSS (`ru_maxrss`) is its own, the real
module code path runs against an SQLite file set up as Synapse sets it up (WAL):

* first import: `parse_roster`, then in ONE transaction `prepare_schema_txn` and
  `apply_import_txn`, then COMMIT;
* unchanged re-import: the same again on the filled database. It must write nothing: the
  ImportReport says so and SQLite's `total_changes` must not move. Afterwards the pieces of
  `apply_import_txn` (load, merge, diff) are timed one by one, and so is
  `member_for_person_txn`, the database work behind each miss of the module's member cache.

The baseline, timed in the parent before and after (the faster counts), is what no importer can
avoid: reading every CSV file's bytes and splitting them with `csv.reader`. The ratio
import/baseline is printed. PostgreSQL is not measured here (the integration tests cover it).

    .venv/bin/python bench/roster.py [--schools 50] [--pupils 1000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synapse_sferum.roster.merge import diff, merge  # noqa: E402
from synapse_sferum.roster.oneroster import parse_roster  # noqa: E402
from synapse_sferum.store.directory import (  # noqa: E402
    apply_import_txn,
    load_snapshot_txn,
    member_for_person_txn,
)
from synapse_sferum.store.schema import prepare_schema_txn  # noqa: E402
from tests.district import DISTRICT_DAY, generate_district  # noqa: E402
from tests.sqlite_txn import Cursor  # noqa: E402

TARGET_SECONDS = 60.0
TARGET_MIB = 1024.0
MEMBER_LOOKUPS = 2000


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)  # we say BEGIN and COMMIT ourselves
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")  # as Synapse's SQLite engine does
    return conn


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def baseline(roster: Path) -> tuple[float, int]:
    """Seconds to read every CSV file and split it into rows, and how many rows there were."""
    start = time.perf_counter()
    rows = 0
    for path in sorted(roster.glob("*.csv")):
        text = path.read_bytes().decode("utf-8")
        for _ in csv.reader(io.StringIO(text, newline="")):
            rows += 1
    return time.perf_counter() - start, rows


def run_phase(roster: Path, db: Path, again: bool) -> dict[str, Any]:
    """One import in this process: what it cost, and what it wrote."""
    out: dict[str, Any] = {"rss_start_mib": rss_mib()}
    start = time.perf_counter()
    change = parse_roster(roster, DISTRICT_DAY)
    out["parse_s"] = time.perf_counter() - start
    out["rss_parsed_mib"] = rss_mib()

    conn = connect(db)
    changes_before = conn.total_changes
    cursor = Cursor(conn)
    start = time.perf_counter()
    conn.execute("BEGIN")
    prepare_schema_txn(cursor)
    report = apply_import_txn(cursor, change, dry_run=False)
    out["apply_s"] = time.perf_counter() - start
    start = time.perf_counter()
    conn.execute("COMMIT")
    out["commit_s"] = time.perf_counter() - start
    out["rss_peak_mib"] = rss_mib()
    # The first run also writes the schema's version row; an unchanged re-import writes nothing.
    out["rows_written"] = conn.total_changes - changes_before
    out["statements"] = cursor.statements
    out["counts"] = report.to_json()
    out["wrote_anything"] = report.wrote_anything
    out["changed_people"] = len(report.changed_person_ids)
    if again:
        out.update(breakdown(conn, change))
    conn.close()
    return out


def breakdown(conn: sqlite3.Connection, change: Any) -> dict[str, Any]:
    """The pieces of an unchanged import, and a member cache miss, timed one by one."""
    cursor = Cursor(conn)
    out: dict[str, Any] = {}
    conn.execute("BEGIN")
    start = time.perf_counter()
    current = load_snapshot_txn(cursor)
    out["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    updated = merge(current, change)
    out["merge_s"] = time.perf_counter() - start
    start = time.perf_counter()
    diff(current, updated)
    out["diff_s"] = time.perf_counter() - start
    people = sorted(current.people)
    rng = random.Random(1)
    sample = [rng.choice(people) for _ in range(MEMBER_LOOKUPS)]
    times = []
    before = cursor.statements
    for person_id in sample:
        start = time.perf_counter()
        member_for_person_txn(cursor, person_id, DISTRICT_DAY, 18)
        times.append(time.perf_counter() - start)
    out["member_miss_us"] = statistics.median(times) * 1e6
    out["member_miss_p99_us"] = sorted(times)[int(0.99 * len(times))] * 1e6
    out["member_miss_queries"] = (cursor.statements - before) / len(sample)
    conn.execute("ROLLBACK")
    return out


def child(roster: Path, db: Path, again: bool) -> dict[str, Any]:
    """Runs one phase in a fresh interpreter, so that its peak RSS is its own."""
    argv = [sys.executable, __file__, "--phase", "again" if again else "first"]
    argv += ["--roster", str(roster), "--db", str(db)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"phase failed:\n{result.stdout}\n{result.stderr}")
    phase: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schools", type=int, default=50)
    parser.add_argument("--pupils", type=int, default=1000, help="pupils per school")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write the roster and database here, keep them")
    parser.add_argument("--phase", choices=("first", "again"), help=argparse.SUPPRESS)
    parser.add_argument("--roster", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.roster, args.db, args.phase == "again")))
        return

    work = args.keep or Path(tempfile.mkdtemp(prefix="sferum-bench-"))
    try:
        measure(work, args.schools, args.pupils, args.seed)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def measure(work: Path, schools: int, pupils: int, seed: int) -> None:
    roster, db = work / "roster", work / "homeserver.db"
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)
    size = generate_district(roster, schools, pupils, seed)
    megabytes = sum(p.stat().st_size for p in roster.glob("*.csv")) / 2**20
    print(
        f"district: {schools} schools × {pupils} pupils = {size.people:,} people, "
        f"{size.enrollments:,} enrollments, {size.classes:,} classes ({megabytes:.1f} MiB of CSV)"
    )
    base_before, rows = baseline(roster)
    first = child(roster, db, again=False)
    again = child(roster, db, again=True)
    base_after, _ = baseline(roster)
    base = min(base_before, base_after)
    print(f"baseline (read + csv.reader, {rows:,} rows): {base:.2f} s")

    for name, phase in (("first import", first), ("re-import", again)):
        total = phase["parse_s"] + phase["apply_s"] + phase["commit_s"]
        phase["total_s"] = total
        print(
            f"{name:13} parse {phase['parse_s']:6.2f} s, apply {phase['apply_s']:6.2f} s, "
            f"commit {phase['commit_s']:5.2f} s = {total:6.2f} s ({total / base:5.1f}× baseline);"
            f" RSS start {phase['rss_start_mib']:.0f}, parsed {phase['rss_parsed_mib']:.0f}, "
            f"peak {phase['rss_peak_mib']:.0f} MiB; {phase['rows_written']:,} rows written in "
            f"{phase['statements']} statements"
        )
    print(f"first import counts: {json.dumps(first['counts'])}")
    print(
        f"re-import pieces: load snapshot {again['load_s']:.2f} s, merge {again['merge_s']:.2f} s,"
        f" diff {again['diff_s']:.2f} s"
    )
    print(
        f"member cache miss (member_for_person_txn): median {again['member_miss_us']:.0f} µs, "
        f"p99 {again['member_miss_p99_us']:.0f} µs, {again['member_miss_queries']:.1f} queries"
    )

    wrote_nothing = not again["wrote_anything"] and again["rows_written"] == 0
    if not wrote_nothing:
        print(f"RE-IMPORT WROTE: {json.dumps(again['counts'])}, {again['rows_written']} rows")
    import_s = first["total_s"]
    peak = max(first["rss_peak_mib"], again["rss_peak_mib"])
    ok = import_s <= TARGET_SECONDS and peak <= TARGET_MIB and wrote_nothing
    print(
        f"import = {import_s:.1f} s (target ≤ 60 s), peak RSS = {peak:.0f} MiB "
        f"(target ≤ 1024 MiB), re-import wrote {again['rows_written']} rows; "
        f"import/baseline = {import_s / base:.1f}, re-import/baseline = "
        f"{again['total_s'] / base:.1f}: {'OK' if ok else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()
