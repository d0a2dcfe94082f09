"""The diary bridge end to end: real Synapse, the bridge process, the CSV source (issue 4).

Marks reach the pupil's diary room only, homework the class chat; a changed mark edits its
message, a deleted one is redacted; a kill -9 in the middle of 400 results loses nothing and
posts nothing twice.
"""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from sferum_shared.vocabulary import Key
from synapse_sferum.ctl.demo import DemoCalendar
from tests.demo import today
from tests.integration.clients import User, login
from tests.integration.conftest import DemoRoster
from tests.integration.harness import (
    Deployment,
    PostgresCluster,
    demo_diary_folder,
    free_port,
    sferumctl,
)

pytestmark = pytest.mark.integration

SERVER = "diary.test"


@attrs.frozen
class School:
    deployment: Deployment
    diary: Path  # the CSV source's folder (a copy the tests change)
    accounts: dict[str, dict[str, Any]]

    async def login(self, person: str) -> User:
        account = self.accounts[person]
        return await login(self.deployment.base_url, account["user_id"], account["password"])

    def sync(self) -> dict[str, int]:
        return diary_sync(self.deployment)

    def bridge_log(self) -> str:
        return (self.deployment.dir / "logs" / "diary-bridge.out").read_text(errors="replace")

    def metrics(self) -> str:
        bridge = yaml.safe_load((self.deployment.dir / "bridge.yaml").read_text())
        url = f"http://127.0.0.1:{bridge['http']['port']}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())


def diary_sync(deployment: Deployment) -> dict[str, int]:
    """`sferumctl diary sync`: the bridge's report of the sync it ran (posted, failed, ...)."""
    out = sferumctl("diary", "sync", str(deployment.dir))
    rows = [line.split() for line in out.stdout.splitlines()[1:] if line.strip()]
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit()}


def make_school(tmp: Path, people: list[str], diary_source: Path) -> School:
    """A started deployment whose bridge reads a copy of `diary_source`; `people` get accounts."""
    diary = tmp / "diary"
    shutil.copytree(diary_source, diary)
    deployment = Deployment(
        tmp / SERVER,
        SERVER,
        extra_init=("--diary-source", f"oneroster-csv:{diary}", "--diary-port", str(free_port())),
    )
    deployment.init()
    deployment.start()
    sferumctl("roster", "import", str(deployment.dir), str(diary))
    accounts = deployment.issue(*people)
    deployment.reconcile()
    return School(deployment, diary, accounts)


# Who signs in below: 5А pupils, a guardian of one, the guardian of another, a 6Б pupil. Only
# they get accounts, as a reconcile of the whole demo school takes twice as long.
PEOPLE = ["p-5a-1", "p-5a-2", "p-5a-3", "g-volkova", "g-morozova", "p-6b-1"]


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory) -> Iterator[School]:
    school = make_school(tmp_path_factory.mktemp("diary"), PEOPLE, demo_diary_folder())
    try:
        school.sync()
        yield school
    finally:
        school.deployment.stop()


async def room_events(user: User, alias: str) -> list[dict[str, Any]]:
    """Every event of a room, oldest first, through /messages."""
    room = await user.room(alias)
    events: list[dict[str, Any]] = []
    token = ""
    while True:
        query = urllib.parse.urlencode(
            {"dir": "b", "limit": 500, **({"from": token} if token else {})}
        )
        reply = await user.call("GET", f"/rooms/{urllib.parse.quote(room)}/messages?{query}")
        assert reply.status == 200, reply
        events += reply.body["chunk"]
        token = reply.body.get("end", "")
        if not reply.body["chunk"] or not token:
            return list(reversed(events))


def diary_posts(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """key -> the current content of each diary message still shown (edits applied)."""
    shown: dict[str, dict[str, Any]] = {}
    by_id: dict[str, str] = {}
    for event in events:
        content = event.get("content", {})
        marker = content.get(Key.DIARY_MARKER)
        if event["type"] != "m.room.message" or not marker:
            continue
        relates = content.get("m.relates_to", {})
        if relates.get("rel_type") == "m.replace":
            shown[by_id[relates["event_id"]]] = content["m.new_content"]
        else:
            by_id[event["event_id"]] = marker["key"]
            shown[marker["key"]] = content
    return shown


async def test_marks_reach_only_the_pupils_diary_room(school: School) -> None:
    pupil = await school.login("p-5a-1")
    posts = diary_posts(await room_events(pupil, f"#diary-p-5a-1:{SERVER}"))
    assert "mark:r-5a-math-kr2-1" in posts
    assert posts["mark:r-5a-math-kr2-1"]["body"].startswith("🟢 5")
    assert all(key.startswith("mark:r-5a-") and key.endswith("-1") for key in posts), posts
    guardian = await school.login("g-volkova")
    assert diary_posts(await room_events(guardian, f"#diary-p-5a-1:{SERVER}")).keys() == (
        posts.keys()
    )
    # a classmate, the guardian of another pupil and a teacher of another class see nothing
    room = await pupil.room(f"#diary-p-5a-1:{SERVER}")
    for outsider in ("p-5a-2", "g-morozova", "p-6b-1"):
        user = await school.login(outsider)
        reply = await user.call("GET", f"/rooms/{urllib.parse.quote(room)}/messages?dir=b")
        assert reply.status == 403, (outsider, reply)


async def test_homework_goes_to_the_class_chat(school: School) -> None:
    pupil = await school.login("p-5a-2")
    posts = diary_posts(await room_events(pupil, f"#class-5a:{SERVER}"))
    homework = [content for key, content in posts.items() if key.startswith("homework:")]
    assert homework and "§12" in homework[0]["body"], posts
    assert not [key for key in posts if key.startswith("mark:")]


async def test_a_changed_mark_is_edited_and_a_deleted_one_redacted(school: School) -> None:
    results = school.diary / "results.csv"
    original = results.read_text(encoding="utf-8")
    rows = list(csv.DictReader(original.splitlines()))
    changed = [dict(r, score="2") if r["sourcedId"] == "r-5a-math-kr2-1" else r for r in rows]
    kept = [r for r in changed if r["sourcedId"] != "r-5a-math-kr2-2"]
    write_csv(results, kept)
    try:
        # The bridge notices the change by itself too; whichever sync ran, it is done now.
        assert school.sync()["failed"] == 0
        pupil = await school.login("p-5a-1")
        events = await room_events(pupil, f"#diary-p-5a-1:{SERVER}")
        assert diary_posts(events)["mark:r-5a-math-kr2-1"]["body"].startswith("🔴 2")
        assert (
            sum(1 for e in events if Key.DIARY_MARKER in e.get("content", {}))
            == len(diary_posts(events)) + 1
        )  # one edit, no new message
        other = await school.login("p-5a-2")
        shown = diary_posts(await room_events(other, f"#diary-p-5a-2:{SERVER}"))
        assert "mark:r-5a-math-kr2-2" not in shown  # redacted events have no content left
        again = school.sync()
        assert again["posted"] == again["edited"] == again["redacted"] == 0, again
    finally:
        results.write_text(original, encoding="utf-8")
        school.sync()


async def test_bad_rows_are_reported_and_the_rest_delivered(school: School) -> None:
    results = school.diary / "results.csv"
    original = results.read_text(encoding="utf-8")
    bad = (
        "r-bad-pupil,,,li-5a-math-kr2,p-nobody,fully graded,5,2026-11-18,\n"
        "r-bad-score,,,li-5a-math-kr2,p-5a-3,fully graded,12,2026-11-18,\n"
        "r-good-new,,,li-5a-rus-dict,p-5a-3,fully graded,4,2026-11-19,\n"
    )
    results.write_text(original + bad, encoding="utf-8")
    try:
        report = school.sync()
        assert report["problems"] == 2 and report["failed"] == 0, report
        pupil = await school.login("p-5a-3")
        shown = diary_posts(await room_events(pupil, f"#diary-p-5a-3:{SERVER}"))
        assert "mark:r-good-new" in shown and "mark:r-bad-score" not in shown, shown.keys()
        log = school.bridge_log()
        assert "p-nobody" in log and "score 12 is outside" in log, log[-2000:]
        assert 'diary_source_problems_total{kind="unknown_reference"' in school.metrics()
    finally:
        results.write_text(original, encoding="utf-8")
        school.sync()


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# -- exactly once through a kill -9 -------------------------------------------------------------

# The bridge posts one item at a time (bridges/diary/sync.py), so a crash can only ever catch a
# single item in flight: a batch big enough to be stopped in its middle proves exactly-once as
# well as a bigger one, and each item more costs the suite a Matrix send and a ledger write.
N_RESULTS = 200
STOP_AFTER = N_RESULTS // 4  # posted before the crash: well into the batch, far from its end


def bulk_results(folder: Path, pupils: list[str], count: int = N_RESULTS) -> None:
    """`count` results of the 5А pupils, in place of the demo gradebook."""
    works = [
        {
            "sourcedId": f"li-bulk-{i}",
            "status": "",
            "dateLastModified": "",
            "title": f"Самостоятельная работа №{i}",
            "description": "",
            "assignDate": str(DemoCalendar(today()).school_day(-2)),
            "dueDate": str(DemoCalendar(today()).school_day(-2)),
            "classSourcedId": "5a",
            "categorySourcedId": "cat-test",
            "gradingPeriodSourcedId": "school-year",
            "resultValueMin": "1",
            "resultValueMax": "5",
        }
        for i in range(count // len(pupils))
    ]
    write_csv(folder / "lineItems.csv", works)
    results = [
        {
            "sourcedId": f"r-bulk-{w}-{p}",
            "status": "",
            "dateLastModified": "",
            "lineItemSourcedId": work["sourcedId"],
            "studentSourcedId": pupil,
            "scoreStatus": "fully graded",
            "score": str(2 + (w + p) % 4),
            "scoreDate": str(DemoCalendar(today()).school_day(-1)),
            "comment": "",
        }
        for w, work in enumerate(works)
        for p, pupil in enumerate(pupils)
    ]
    assert len(results) == count
    write_csv(folder / "results.csv", results)


def posted_count(deployment: Deployment) -> int:
    """Items the bridge's ledger has posted: in diary.db beside a deployment on SQLite, in the
    deployment's own database on PostgreSQL."""
    count = "SELECT COUNT(*) FROM diary_posts WHERE event_id IS NOT NULL"
    if deployment.database != "sqlite":
        [(posted,)] = deployment.sql(count)
        return int(posted)
    import sqlite3

    with sqlite3.connect(deployment.dir / "diary.db") as db:
        return int(db.execute(count).fetchone()[0])


async def bulk_marks(user: User, pupil: str) -> list[str]:
    """The keys of the bulk marks posted in the pupil's diary, each time one was posted (an
    edit is not a post)."""
    events = await room_events(user, f"#diary-{pupil}:{user.user_id.split(':', 1)[1]}")
    return [
        e["content"][Key.DIARY_MARKER]["key"]
        for e in events
        if Key.DIARY_MARKER in e.get("content", {})
        and "m.relates_to" not in e["content"]
        and e["content"][Key.DIARY_MARKER]["key"].startswith("mark:r-bulk-")
    ]


async def test_kill_9_in_the_middle_of_a_batch_of_marks_posts_each_exactly_once(
    tmp_path: Path, demo_roster: DemoRoster
) -> None:
    pupils = sorted(demo_roster.students["5a"])
    source = tmp_path / "bulk"
    shutil.copytree(demo_diary_folder(), source)
    bulk_results(source, pupils)
    (source / "timetable.ics").unlink(missing_ok=True)
    # Accounts for the 5А pupils only, whose diaries it reads: a reconcile of the whole demo
    # school takes half a minute.
    school = make_school(tmp_path, pupils, source)
    try:
        # The bridge's sync at its start found no rooms yet (the accounts came after it): a
        # touched source file makes it sync now rather than at its next interval (30 s).
        os.utime(school.diary / "results.csv")
        deadline = time.monotonic() + 120
        while posted_count(school.deployment) < STOP_AFTER:
            assert time.monotonic() < deadline, school.bridge_log()[-3000:]
            await asyncio.sleep(0.05)
        os.kill(school.deployment.pid("diary-bridge"), signal.SIGKILL)
        killed_at = posted_count(school.deployment)
        assert killed_at < N_RESULTS, "the batch finished before the kill; make it bigger"
        sferumctl("start", str(school.deployment.dir))  # the bridge again; Synapse still runs
        report = school.sync()
        assert report["failed"] == 0, report
        total = 0
        for pupil in pupils:
            originals = await bulk_marks(await school.login(pupil), pupil)
            assert len(originals) == len(set(originals)), f"duplicates in {pupil}'s diary"
            total += len(originals)
        assert total == N_RESULTS, (killed_at, total)
    finally:
        school.deployment.stop()


async def test_the_bridge_serves_the_mini_app_and_the_class_feeds(school: School) -> None:
    from bridges.diary.ical_feed import feed_path

    bridge = yaml.safe_load((school.deployment.dir / "bridge.yaml").read_text())
    base = bridge["public_url"]
    pupil = await school.login("p-5a-1")
    for alias in (f"#class-5a:{SERVER}", f"#diary-p-5a-1:{SERVER}"):
        room = urllib.parse.quote(await pupil.room(alias))
        widgets = await pupil.call("GET", f"/rooms/{room}/state")
        assert any(
            e["type"] == "im.vector.modular.widgets" and e["content"]["url"].startswith(base)
            for e in widgets.body
        ), alias
    with urllib.request.urlopen(f"{base}/app?kind=diary&scope=p-5a-1", timeout=10) as page:
        assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    with urllib.request.urlopen(base + feed_path(bridge["ical_secret"], "5a"), timeout=10) as ics:
        calendar = ics.read().decode()
    assert calendar.startswith("BEGIN:VCALENDAR") and "BEGIN:VEVENT" in calendar
    wrong = base + feed_path("not the secret", "5a")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong, timeout=10)
    assert refused.value.code == 404


async def test_on_postgresql_the_bridge_keeps_its_ledger_in_the_deployments_database(
    tmp_path: Path, demo_roster: DemoRoster, postgres: PostgresCluster
) -> None:
    """A deployment on PostgreSQL: the bridge's tables live there, and it works the same."""
    diary = tmp_path / "diary"
    shutil.copytree(demo_diary_folder(), diary)
    database = postgres.create_database("diary_pg")
    deployment = Deployment(
        tmp_path / SERVER,
        SERVER,
        database,
        extra_init=("--diary-source", f"oneroster-csv:{diary}", "--diary-port", str(free_port())),
    )
    deployment.init()
    deployment.start()
    try:
        sferumctl("roster", "import", str(deployment.dir), str(diary))
        accounts = deployment.issue("p-5a-1")
        deployment.reconcile()
        school = School(deployment, diary, accounts)
        assert school.sync()["failed"] == 0
        pupil = await school.login("p-5a-1")
        posts = diary_posts(await room_events(pupil, f"#diary-p-5a-1:{SERVER}"))
        assert "mark:r-5a-math-kr2-1" in posts
        assert not (deployment.dir / "diary.db").exists()
        out = subprocess.run(
            [
                "psql",
                database,
                "-At",
                "-c",
                "SELECT COUNT(*) FROM diary_posts WHERE event_id IS NOT NULL",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert int(out.stdout.strip()) >= len(posts)
        # `person export` reads the pupil's diary entries from the ledger in PostgreSQL too.
        zip_path = str(tmp_path / "export.zip")
        dry = sferumctl("person", "export", str(deployment.dir), "p-5a-1", zip_path, "--dry-run")
        assert f", {len(posts)} diary ledger entr(ies)" in dry.stdout, (posts, dry.stdout)
    finally:
        deployment.stop()
