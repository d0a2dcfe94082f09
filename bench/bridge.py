#!/usr/bin/env python3
"""Measures the diary bridge mirroring --count marks against plain client-API sends (≥ 0.8).

One real Synapse deployment on SQLite is made with the integration harness (`sferumctl init
--diary-source oneroster-csv:FOLDER`, the test rate limits of TEST_OVERRIDES), its bridge.yaml
given `sync_interval_seconds: 86400` so that only a change of the source starts a sync, and
started. The source folder is a copy of the demo's diary without timetable.ics, whose gradebook
is replaced by works of 5А and 6Б (lineItems.csv, written before the start) and an empty
results.csv. The roster is imported, the 8 pupils of 5А and 6Б get accounts (their diary rooms
exist from then on), the rooms are reconciled, and one `sferumctl diary sync` settles the start.

The --count results (each pupil marked for the works of the pupil's class) are written beside
the source and rendered into messages with the bridge's own code (the CSV source, `plan` with the
default templates, `message_content`), so both sides send the very same bodies. Then, in the
same run, one after the other:

* plain, first half: the messages of the first half of the results, each as one client-API
  `PUT /rooms/{room}/send/m.room.message/{txnId}` of the bridge's bot (the appservice's
  `as_token`, not rate limited), sequentially over one keep-alive aiohttp session, into the
  rooms the bridge posts them to (resolved beforehand);
* bridge: results.csv is moved into the source folder (an atomic rename); the bridge notices
  the change by itself (it looks every second) and syncs: reads and renders the results,
  resolves the rooms, and posts each mark through its ledger (an intent row, the send, the
  completion) — sequentially, as it always does. Timed from the rename until diary.db holds
  --count posts with an event ID;
* plain, second half: the rest of the messages, as the first half.

Splitting the plain sends around the bridge's run lets the drift of a shared machine fall on
both alike; 50 plain sends warm up first. Checked afterwards: the bridge's log reports the
posts with no failure, a `sferumctl diary sync` (timed: a no-op resync) reports posted 0 and
every mark unchanged, diary.db holds --count sent rows, and Synapse's database holds the bot's
messages of both sides. Printed: count, seconds and messages/s of each, the ratio bridge/plain
of the rates, and the median time per message of each (the bridge's from its ledger's
completion times).

    .venv/bin/python bench/bridge.py [--count 10000]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import csv
import itertools
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.parse
import zoneinfo
from datetime import time as day_time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
)  # for the sferumctl subprocesses the harness runs

from bridges.diary.matrix import message_content  # noqa: E402
from bridges.diary.plan import Post, plan  # noqa: E402
from bridges.diary.render import Renderer  # noqa: E402
from bridges.diary.sources.csvsource import OneRosterCsvSource  # noqa: E402
from sferum_shared import SYSTEM_CLOCK  # noqa: E402
from tests.integration.harness import (  # noqa: E402
    Deployment,
    demo_diary_folder,
    free_port,
    sferumctl,
)

SERVER_NAME = "bridge-bench.test"
TIMEZONE = "Europe/Moscow"
# The pupils of the demo roster's two homerooms (tests/integration/conftest.py's DemoRoster).
PUPILS = {
    "5a": ("p-5a-1", "p-5a-2", "p-5a-3", "p-5a-4"),
    "6b": ("p-6b-1", "p-6b-2", "p-6b-3", "p-6b-4"),
}
WARM_UP = 50
TARGET = 0.8
SYNC_DONE = "diary: sync done: "  # what the bridge logs after each sync, then the report


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def gradebook(count: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(lineItems, results): --count results over the works of each class, class by class."""
    per_class = -(-count // sum(len(p) for p in PUPILS.values()))  # works per class
    works = [
        {
            "sourcedId": f"li-bench-{class_id}-{w}",
            "status": "",
            "dateLastModified": "",
            "title": f"Самостоятельная работа №{w + 1}",
            "description": "",
            "assignDate": "2026-11-02",
            "dueDate": "2026-11-02",
            "classSourcedId": class_id,
            "categorySourcedId": "cat-test",
            "gradingPeriodSourcedId": "school-year",
            "resultValueMin": "1",
            "resultValueMax": "5",
        }
        for class_id in PUPILS
        for w in range(per_class)
    ]
    results = [
        {
            "sourcedId": f"r-bench-{work['sourcedId']}-{pupil}",
            "status": "",
            "dateLastModified": "",
            "lineItemSourcedId": work["sourcedId"],
            "studentSourcedId": pupil,
            "scoreStatus": "fully graded",
            "score": str(2 + (w + p) % 4),
            "scoreDate": "2026-11-03",
            "comment": "",
        }
        for w, work in enumerate(works)
        for p, pupil in enumerate(PUPILS[work["classSourcedId"]])
    ]
    return works, results[:count]


def prepare_source(root: Path, count: int) -> tuple[Path, Path]:
    """The bridge's source folder (works, no results) and the results.csv to move into it."""
    source = root / "diary"
    shutil.copytree(demo_diary_folder(), source)
    (source / "timetable.ics").unlink(missing_ok=True)
    works, results = gradebook(count)
    write_csv(source / "lineItems.csv", works)
    header = "sourcedId,status,dateLastModified,lineItemSourcedId,studentSourcedId,scoreStatus,"
    (source / "results.csv").write_text(header + "score,scoreDate,comment\n", encoding="utf-8")
    staged = root / "staged"  # the source as it will be, to render the messages from
    shutil.copytree(source, staged)
    write_csv(staged / "results.csv", results)
    return source, staged / "results.csv"


async def rendered_posts(folder: Path) -> list[Post]:
    """The bridge's own posts for `folder`: its CSV source, plan and default templates."""
    source = OneRosterCsvSource(
        folder, f"oneroster-csv:{folder}", clock=SYSTEM_CLOCK, timezone=TIMEZONE
    )
    snapshot = await source.snapshot()
    if snapshot.problems:
        raise RuntimeError(f"the generated gradebook has problems: {snapshot.problems[:3]}")
    now = SYSTEM_CLOCK.now(zoneinfo.ZoneInfo(TIMEZONE))
    return plan(snapshot, Renderer(), now, day_time(7, 30))


def set_sync_interval(deployment: Deployment, seconds: int) -> None:
    path = deployment.dir / "bridge.yaml"
    text, n = re.subn(
        r"^sync_interval_seconds: *\d+$",
        f"sync_interval_seconds: {seconds}",
        path.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    if n != 1:
        raise RuntimeError(f"{path} has no sync_interval_seconds line to change")
    path.write_text(text, encoding="utf-8")


def diary_sync(deployment: Deployment) -> dict[str, int]:
    out = sferumctl("diary", "sync", str(deployment.dir))
    rows = [line.split() for line in out.stdout.splitlines()[1:] if line.strip()]
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit()}


def posted_count(deployment: Deployment) -> int:
    with sqlite3.connect(deployment.dir / "diary.db") as db:
        row = db.execute("SELECT COUNT(*) FROM diary_posts WHERE event_id IS NOT NULL").fetchone()
    return int(row[0])


def ledger_gaps_ms(deployment: Deployment) -> list[int]:
    """Milliseconds between consecutive completions in the ledger: the bridge's time per post."""
    with sqlite3.connect(deployment.dir / "diary.db") as db:
        stamps = [
            int(ts)
            for (ts,) in db.execute(
                "SELECT updated_ts FROM diary_posts WHERE state = 'sent' ORDER BY updated_ts"
            )
        ]
    return [b - a for a, b in itertools.pairwise(stamps)]


def sync_reports(deployment: Deployment) -> list[dict[str, Any]]:
    """Every report the bridge logged after a sync, oldest first."""
    log = (deployment.dir / "logs" / "diary-bridge.out").read_text(errors="replace")
    found = []
    for line in log.splitlines():
        if SYNC_DONE in line:
            report = ast.literal_eval(line.split(SYNC_DONE, 1)[1].strip())
            if isinstance(report, dict):
                found.append(report)
    return found


def bot_messages(deployment: Deployment, bot: str, rooms: set[str]) -> int:
    """The bot's m.room.message events in `rooms`, from Synapse's own database."""
    marks = ",".join("?" * len(rooms))
    with sqlite3.connect(deployment.dir / "homeserver.db") as db:
        row = db.execute(
            "SELECT COUNT(*) FROM events WHERE type = 'm.room.message' AND sender = ?"
            f" AND room_id IN ({marks})",
            (bot, *sorted(rooms)),
        ).fetchone()
    return int(row[0])


class PlainSender:
    """The bot's client-API sends over one keep-alive aiohttp session, one after the other."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, token: str):
        self.http = http
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.latencies: list[float] = []
        self.sent = 0
        self._txn = itertools.count()

    async def resolve(self, alias: str) -> str:
        url = f"{self.base_url}/_matrix/client/v3/directory/room/{urllib.parse.quote(alias)}"
        async with self.http.get(url, headers=self.headers) as response:
            reply = await response.json()
            if response.status != 200:
                raise RuntimeError(f"resolving {alias}: {response.status} {reply}")
        return str(reply["room_id"])

    async def send(self, room_id: str, content: dict[str, Any]) -> None:
        txn = f"bench-plain-{os.getpid()}-{next(self._txn)}"
        url = (
            f"{self.base_url}/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}"
            f"/send/m.room.message/{txn}"
        )
        start = time.perf_counter()
        async with self.http.put(url, json=content, headers=self.headers) as response:
            reply = await response.json(content_type=None)
            if response.status != 200 or "event_id" not in reply:
                raise RuntimeError(f"send to {room_id}: {response.status} {reply}")
        self.latencies.append(time.perf_counter() - start)
        self.sent += 1

    async def send_all(self, messages: list[tuple[str, dict[str, Any]]]) -> float:
        """Seconds to send `messages` ((room ID, content) pairs) one after the other."""
        start = time.perf_counter()
        for room_id, content in messages:
            await self.send(room_id, content)
        return time.perf_counter() - start


async def bridge_run(deployment: Deployment, source: Path, results: Path, count: int) -> float:
    """Seconds from moving results.csv into the source until the bridge posted `count`."""
    deadline = time.monotonic() + 120 + count * 0.1  # at least 10 posts/s, or something is off
    start = time.perf_counter()
    os.replace(results, source / "results.csv")
    while (done := posted_count(deployment)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bridge posted {done} of {count} in time:\n"
                               + deployment.log_tail())  # fmt: skip
        await asyncio.sleep(0.05)
    return time.perf_counter() - start


async def measure(
    deployment: Deployment, source: Path, results: Path, posts: list[Post]
) -> tuple[float, float, PlainSender, set[str]]:
    """(bridge seconds, plain seconds, the plain sender, the rooms)."""
    token = str(deployment.secrets["as_token"])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http:
        plain = PlainSender(http, deployment.base_url, token)
        aliases = sorted({post.room_alias for post in posts})
        rooms = {a: await plain.resolve(f"#{a}:{SERVER_NAME}") for a in aliases}
        messages = [(rooms[post.room_alias], message_content(post)) for post in posts]
        await plain.send_all(messages[:WARM_UP])
        plain.latencies.clear()
        half = len(messages) // 2
        plain_s = await plain.send_all(messages[:half])
        print(f"plain, first half: {half} in {plain_s:.1f} s", flush=True)
        bridge_s = await bridge_run(deployment, source, results, len(posts))
        print(f"bridge: {len(posts)} in {bridge_s:.1f} s", flush=True)
        second = await plain.send_all(messages[half:])
        print(f"plain, second half: {len(messages) - half} in {second:.1f} s", flush=True)
        return bridge_s, plain_s + second, plain, set(rooms.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="marks to mirror")
    args = parser.parse_args()
    if args.count < 2:
        parser.error("--count must be at least 2")
    count: int = args.count

    root = Path(tempfile.mkdtemp(prefix="sferum-bridge-"))
    started = time.perf_counter()
    source, results = prepare_source(root, count)
    deployment = Deployment(
        root / "deployment",
        SERVER_NAME,
        extra_init=("--diary-source", f"oneroster-csv:{source}", "--diary-port", str(free_port())),
    )
    try:
        deployment.init()
        set_sync_interval(deployment, 86400)  # only a change of the source starts a sync
        deployment.start()
        sferumctl("roster", "import", str(deployment.dir), str(source))
        pupils = [p for class_pupils in PUPILS.values() for p in class_pupils]
        deployment.issue(*pupils)
        report = deployment.reconcile()
        if report.get("failures"):
            raise RuntimeError(f"reconcile failed: {report}")
        settled = diary_sync(deployment)
        if settled.get("posted") or settled.get("failed") or posted_count(deployment):
            raise RuntimeError(f"the bridge posted before the bench: {settled}")
        posts = asyncio.run(rendered_posts(results.parent))
        if len(posts) != count or {p.kind for p in posts} != {"mark"}:
            raise RuntimeError(f"{len(posts)} posts rendered for {count} results")
        reports_before = len(sync_reports(deployment))
        print(
            f"set up in {time.perf_counter() - started:.0f} s: {count} results of "
            f"{len(PUPILS)} classes' {len(pupils)} pupils rendered; plain half, bridge, "
            "plain half",
            flush=True,
        )
        bridge_s, plain_s, plain, rooms = asyncio.run(measure(deployment, source, results, posts))

        # -- checks -----------------------------------------------------------------------
        reports = sync_reports(deployment)[reports_before:]
        logged = sum(int(r.get("posted", 0)) for r in reports)
        failed = sum(int(r.get("failed", 0)) for r in reports)
        resync_start = time.perf_counter()
        again = diary_sync(deployment)
        resync_s = time.perf_counter() - resync_start
        ledger = posted_count(deployment)
        bot = str(yaml.safe_load((deployment.dir / "bridge.yaml").read_text())["bot_user_id"])
        events = bot_messages(deployment, bot, rooms)
        expected_events = count + plain.sent  # plain.sent counts the warm-up
        print(
            f"checked: the bridge logged {len(reports)} sync(s) posting {logged}, failed "
            f"{failed}; diary.db holds {ledger} posted; a resync ({resync_s:.1f} s) reports "
            f"posted {again.get('posted')}, unchanged {again.get('unchanged')}, failed "
            f"{again.get('failed')}; Synapse holds {events} bot messages in the "
            f"{len(rooms)} rooms (expected {expected_events}: bridge + warm-up + plain)"
        )
        if (
            logged != count
            or failed
            or ledger != count
            or again.get("posted") != 0
            or again.get("unchanged") != count
            or again.get("failed") != 0
            or events != expected_events
        ):
            sys.exit("the bridge did not post every mark exactly once: figures not valid")
        gaps = ledger_gaps_ms(deployment)
    finally:
        deployment.stop()
        shutil.rmtree(root, ignore_errors=True)

    bridge_rate, plain_rate = count / bridge_s, count / plain_s
    print(
        f"median ms per message: bridge {statistics.median(gaps):.1f} (between ledger "
        f"completions), plain {statistics.median(plain.latencies) * 1000:.1f} (per PUT)"
    )
    print(f"bridge {count:6} messages in {bridge_s:7.1f} s: {bridge_rate:7.1f}/s")
    print(f"plain  {count:6} messages in {plain_s:7.1f} s: {plain_rate:7.1f}/s")
    ratio = bridge_rate / plain_rate
    print(
        f"total {time.perf_counter() - started:.0f} s; ratio bridge/plain = {ratio:.3f} "
        f"(target ≥ {TARGET}): {'OK' if ratio >= TARGET else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()
