"""The diary bridge's other sources and failures, end to end (issue 4): real Synapse (SQLite) and
the bridge process started by `sferumctl start`.

* the OneRoster REST source: marks delivered; a server answering 500 or not answering at all is
  a logged, counted fetch problem that redacts nothing; a changed score edits its message;
* the push source next to the CSV one: a signed push is delivered, a bad signature (401) and a
  replayed request id (409) are logged, counted and deliver nothing;
* Synapse stopped in the middle of posting 400 marks and started again: every mark ends up
  in its pupil's diary exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import shutil
import signal
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sferum_shared.vocabulary import Key
from synapse_sferum.ctl.demo import DemoCalendar
from tests.demo import today
from tests.integration.conftest import DemoRoster
from tests.integration.harness import Deployment, demo_diary_folder, free_port, sferumctl
from tests.integration.oneroster_rest_server import CLIENT_ID, CLIENT_SECRET, OneRosterRestServer
from tests.integration.test_diary_bridge import (
    N_RESULTS,
    SERVER,
    STOP_AFTER,
    School,
    bulk_results,
    diary_posts,
    room_events,
)

pytestmark = pytest.mark.integration

REST_TIMEOUT = 2.0  # the REST source's per-request timeout here (its default is 10 s)


def make_school_with(
    tmp: Path,
    roster: DemoRoster,
    sources: tuple[str, ...],
    diary: Path,
    rest_timeout: float | None = None,
) -> School:
    """A started deployment whose bridge reads `sources`; the roster is imported from `diary`
    (a OneRoster CSV folder) and the 5А pupils get accounts and their rooms (only they: a
    reconcile of the whole demo school takes half a minute). `rest_timeout` goes into the
    bridge.yaml of REST sources as their `timeout_seconds`."""
    deployment = Deployment(
        tmp / SERVER,
        SERVER,
        extra_init=(
            *(arg for source in sources for arg in ("--diary-source", source)),
            "--diary-port",
            str(free_port()),
        ),
    )
    deployment.init()
    if rest_timeout is not None:
        config = bridge_config(deployment)
        config["sources"] = [
            {
                "kind": "oneroster-rest",
                "location": source.partition(":")[2],
                "timeout_seconds": rest_timeout,
            }
            if source.startswith("oneroster-rest:")
            else source
            for source in config["sources"]
        ]
        (deployment.dir / "bridge.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    deployment.start()
    sferumctl("roster", "import", str(deployment.dir), str(diary))
    accounts = deployment.issue(*sorted(roster.students["5a"]))
    deployment.reconcile()
    return School(deployment, diary, accounts)


def sync(deployment: Deployment) -> tuple[int, dict[str, str]]:
    """`sferumctl diary sync`: its exit code and the report's rows (what -> count)."""
    out = sferumctl("diary", "sync", str(deployment.dir), check=False)
    rows = [line.split() for line in out.stdout.splitlines()[1:] if line.strip()]
    return out.returncode, {row[0]: row[1] for row in rows if len(row) == 2}


def bridge_config(deployment: Deployment) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((deployment.dir / "bridge.yaml").read_text())
    return loaded


def counter(school: School, name: str, **labels: str) -> float:
    """A sample of the bridge's /metrics (0 when it has not been counted yet)."""
    for family in text_string_to_metric_families(school.metrics()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def shown(school: School, pupil: str) -> dict[str, dict[str, Any]]:
    user = await school.login(pupil)
    return diary_posts(await room_events(user, f"#diary-{pupil}:{SERVER}"))


# -- the OneRoster REST source ----------------------------------------------------------------


async def test_rest_source_delivers_survives_errors_and_timeouts_and_edits(
    tmp_path: Path, demo_roster: DemoRoster
) -> None:
    # The server runs in this test's event loop: every blocking call goes to a thread.
    server = OneRosterRestServer(demo_diary_folder())
    await server.start()
    diary = tmp_path / "diary"
    shutil.copytree(demo_diary_folder(), diary)
    # OneRosterRestSource: base URL = the server root, token URL = base + /oauth/token.
    source = f"oneroster-rest:http://{CLIENT_ID}:{CLIENT_SECRET}@127.0.0.1:{server.port}"
    name = f"oneroster-rest:{server.base_url}"  # the source's name: no credentials
    try:
        school = await asyncio.to_thread(
            make_school_with, tmp_path, demo_roster, (source,), diary, REST_TIMEOUT
        )
    except BaseException:
        await server.stop()
        raise
    deployment = school.deployment
    try:
        [configured] = bridge_config(deployment)["sources"]
        assert configured["location"] == source.partition(":")[2], configured
        code, report = await asyncio.to_thread(sync, deployment)
        assert code == 0 and report["failed"] == "0" and report["complete"] == "True", report
        posts = await shown(school, "p-5a-1")
        assert posts["mark:r-5a-math-kr2-1"]["body"].startswith("🟢 5"), posts.keys()
        assert all(key.startswith("mark:r-5a-") and key.endswith("-1") for key in posts), posts
        assert server.tokens_issued >= 1 and any("/gradebook/" in r for r in server.requests)

        # The server fails: the sync says the snapshot is incomplete, the log names the URL,
        # the problem is counted, and nothing is redacted.
        for what, switch, expect in (
            ("HTTP 500", {"fail_status": 500}, "answered HTTP 500"),
            ("timeout", {"delay": REST_TIMEOUT + 1.5}, f"no answer within {REST_TIMEOUT:g} s"),
        ):
            before = counter(school, "diary_source_problems_total", source=name, kind="fetch")
            for attribute, value in switch.items():
                setattr(server, attribute, value)
            code, report = await asyncio.to_thread(sync, deployment)
            server.fail_status, server.delay = None, 0.0
            assert code == 0, (what, report)
            assert report["complete"] == "False" and report["redacted"] == "0", (what, report)
            log = school.bridge_log()
            assert f"source {name} cannot be read" in log, (what, log[-3000:])
            failures = [
                line for line in log.splitlines() if f"source {name} cannot be read" in line
            ]
            assert any(
                f"{server.base_url}/ims/oneroster/" in line and expect in line for line in failures
            ), (what, failures[-3:])
            assert CLIENT_SECRET not in log
            after = counter(school, "diary_source_problems_total", source=name, kind="fetch")
            assert after > before, (what, before, after)
            posts = await shown(school, "p-5a-1")
            assert posts["mark:r-5a-math-kr2-1"]["body"].startswith("🟢 5"), (what, posts)
            assert len(posts) >= 2, (what, posts)

        # A changed score, with the server healthy again: the mark's message is edited.
        server.set_score("r-5a-math-kr2-1", 2.0)
        deadline = time.monotonic() + 60
        while True:
            code, report = await asyncio.to_thread(sync, deployment)
            if code == 0 and report["complete"] == "True":
                break
            assert time.monotonic() < deadline, report
        user = await school.login("p-5a-1")
        events = await room_events(user, f"#diary-p-5a-1:{SERVER}")
        assert diary_posts(events)["mark:r-5a-math-kr2-1"]["body"].startswith("🔴 2")
        originals = [
            e for e in events if Key.DIARY_MARKER in e.get("content", {})
            and "m.relates_to" not in e["content"]
        ]  # fmt: skip
        assert len(originals) == len({e["content"][Key.DIARY_MARKER]["key"] for e in originals})
        code, report = await asyncio.to_thread(sync, deployment)
        assert report["posted"] == report["edited"] == report["redacted"] == "0", report
    finally:
        await asyncio.to_thread(deployment.stop)
        await server.stop()


# -- the push source next to the CSV one ------------------------------------------------------


@pytest.fixture(scope="module")
def csv_and_push(
    tmp_path_factory: pytest.TempPathFactory, demo_roster: DemoRoster
) -> Iterator[School]:
    tmp = tmp_path_factory.mktemp("diary-push")
    diary = tmp / "diary"
    shutil.copytree(demo_diary_folder(), diary)
    school = make_school_with(tmp, demo_roster, (f"oneroster-csv:{diary}", "push"), diary)
    try:
        code, report = sync(school.deployment)
        assert code == 0, report
        yield school
    finally:
        school.deployment.stop()


def push(
    deployment: Deployment, body: dict[str, Any], secret: str | None = None
) -> tuple[int, dict[str, Any]]:
    """POST /push signed with `secret` (the deployment's push_secret by default)."""
    config = bridge_config(deployment)
    raw = json.dumps(body, ensure_ascii=False).encode()
    timestamp = str(int(time.time()))
    key = (config["push_secret"] if secret is None else secret).encode()
    mac = hmac.new(key, timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{config['http']['port']}/push",
        data=raw,
        headers={
            "Content-Type": "application/json",
            "X-Diary-Timestamp": timestamp,
            "X-Diary-Signature": f"sha256={mac}",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read() or b"{}")


def pushed_mark(mark_id: str, value: str) -> dict[str, str]:
    return {
        "id": mark_id,
        "student_id": "p-5a-1",
        "class_id": "5a",
        "work": "Устный ответ",
        "subject": "Математика",
        "value": value,
        "work_date": str(DemoCalendar(today()).school_day(-1)),
    }


async def test_a_signed_push_is_delivered_a_forged_or_replayed_one_is_not(
    csv_and_push: School,
) -> None:
    school = csv_and_push
    signature_before = counter(school, "diary_source_problems_total", source="push",
                               kind="signature")  # fmt: skip
    replay_before = counter(school, "diary_source_problems_total", source="push", kind="replay")

    status, answer = push(
        school.deployment, {"id": "req-1", "marks": [pushed_mark("push-good", "4")]}
    )
    assert status == 200 and answer["accepted"] == 1 and not answer["problems"], answer
    status, answer = push(
        school.deployment,
        {"id": "req-2", "marks": [pushed_mark("push-forged", "5")]},
        secret="guessed",
    )
    assert status == 401, answer
    status, answer = push(
        school.deployment, {"id": "req-1", "marks": [pushed_mark("push-replayed", "5")]}
    )
    assert status == 409, answer

    code, report = sync(school.deployment)
    assert code == 0 and report["failed"] == "0", report
    posts = await shown(school, "p-5a-1")
    assert posts["mark:push-good"]["body"].startswith("🔵 4"), posts["mark:push-good"]
    assert "mark:push-forged" not in posts and "mark:push-replayed" not in posts, posts.keys()
    assert "mark:r-5a-math-kr2-1" in posts  # the CSV source's marks are still there
    # nothing reached any other diary either
    for pupil in ("p-5a-2", "p-5a-3"):
        assert not [k for k in await shown(school, pupil) if k.startswith("mark:push-")]

    log = school.bridge_log()
    assert "push" in log and "refused (401)" in log and "does not match" in log, log[-3000:]
    assert "push req-1 refused (409)" in log, log[-3000:]
    assert counter(school, "diary_source_problems_total", source="push",
                   kind="signature") == signature_before + 1  # fmt: skip
    assert counter(school, "diary_source_problems_total", source="push",
                   kind="replay") == replay_before + 1  # fmt: skip


# -- Synapse restarted in the middle of a sync -------------------------------------------------


def bulk_posted(deployment: Deployment) -> int:
    with sqlite3.connect(deployment.dir / "diary.db") as db:
        return int(
            db.execute(
                "SELECT COUNT(*) FROM diary_posts"
                " WHERE event_id IS NOT NULL AND item_key LIKE 'mark:r-bulk-%'"
            ).fetchone()[0]
        )


def wait_exited(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state == "Z":  # exited; its parent has not reaped it yet
            return
        time.sleep(0.1)
    raise AssertionError(f"Synapse (pid {pid}) did not exit within {timeout} s")


async def test_synapse_restarted_during_a_sync_loses_and_repeats_nothing(
    csv_and_push: School, demo_roster: DemoRoster
) -> None:
    school = csv_and_push
    deployment = school.deployment
    pupils = sorted(demo_roster.students["5a"])
    bridge_pid = int((deployment.dir / "run" / "diary-bridge.pid").read_text())
    unavailable_before = counter(school, "diary_syncs_total", outcome="homeserver_unavailable")
    log_before = len(school.bridge_log())
    bulk_results(school.diary, pupils)  # the bridge notices the change by itself

    deadline = time.monotonic() + 120
    while bulk_posted(deployment) < STOP_AFTER:
        assert time.monotonic() < deadline, school.bridge_log()[-3000:]
        await asyncio.sleep(0.05)
    synapse_pid = int((deployment.dir / "run" / "synapse.pid").read_text())
    os.kill(synapse_pid, signal.SIGTERM)
    await asyncio.to_thread(wait_exited, synapse_pid)
    stopped_at = bulk_posted(deployment)
    assert stopped_at < N_RESULTS, "the batch finished before Synapse stopped; make it bigger"

    # The bridge gives the sync up with a clear error and keeps running.
    deadline = time.monotonic() + 60
    while "the homeserver is unavailable" not in school.bridge_log()[log_before:]:
        assert time.monotonic() < deadline, school.bridge_log()[-3000:]
        await asyncio.sleep(0.2)
    assert (
        counter(school, "diary_syncs_total", outcome="homeserver_unavailable") > unavailable_before
    )
    assert bulk_posted(deployment) < N_RESULTS

    out = await asyncio.to_thread(sferumctl, "start", str(deployment.dir))
    assert f"diary-bridge: already running (pid {bridge_pid})" in out.stdout, out.stdout
    assert "synapse: starting" in out.stdout, out.stdout

    deadline = time.monotonic() + 120
    while True:
        code, report = await asyncio.to_thread(sync, deployment)
        if code == 0 and report.get("failed") == "0" and report.get("complete") == "True":
            break
        assert time.monotonic() < deadline, report
        await asyncio.sleep(1)
    assert bulk_posted(deployment) == N_RESULTS

    expected = {f"mark:r-bulk-{w}-{p}" for w in range(N_RESULTS // len(pupils))
                for p in range(len(pupils))}  # fmt: skip
    found: list[str] = []
    for pupil in pupils:
        user = await school.login(pupil)
        events = await room_events(user, f"#diary-{pupil}:{SERVER}")
        originals = [
            e["content"][Key.DIARY_MARKER]["key"]
            for e in events
            if Key.DIARY_MARKER in e.get("content", {})
            and "m.relates_to" not in e["content"]
            and e["content"][Key.DIARY_MARKER]["key"].startswith("mark:r-bulk-")
        ]
        assert len(originals) == len(set(originals)), f"duplicates in {pupil}'s diary"
        found += originals
    assert len(found) == N_RESULTS and set(found) == expected, (stopped_at, len(found))
