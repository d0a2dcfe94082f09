"""The module under Synapse workers, as `sferumctl init --workers 2` lays them out and
`sferumctl start` runs them (docs/architecture.md): main, two generic workers for clients, a
federation reader, an event persister, a federation sender, a pusher, a background worker and a
media worker on 127.0.0.2 and 127.0.0.3, with Redis and nginx; PostgreSQL.

Clients and sferumctl only ever talk to nginx's port. The roster import, the accounts and the
reconciles go through it to the background worker, which runs the module's background jobs. The
generic workers' caches of the module (`_member`, `_planned_members`, ...) are warmed first, then a
re-imported roster moves a pupil to another class: the workers, never restarted, must answer by the
new roster, which they can only do if the background worker's `invalidate_cache` reached them.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest

from synapse_sferum.ctl.workers import internal_ports
from tests.integration.clients import Reply, User, fetch_media, login, upload_media
from tests.integration.conftest import DemoRoster
from tests.integration.harness import (
    Deployment,
    PostgresCluster,
    copy_roster,
    demo_roster_folder,
    free_ports,
    sferumctl,
)
from tests.integration.test_attacks import PNG

pytestmark = pytest.mark.integration

SERVER = "workers.test"
WORKER_HOSTS = ("127.0.0.2", "127.0.0.3")
CLIENT_WORKERS = ("client-1", "client-2")
PROCESSES = (  # as `sferumctl status` lists them: the workers by name
    "redis",
    "synapse",
    "synapse-background",
    *(f"synapse-{name}" for name in CLIENT_WORKERS),
    "synapse-event-persister",
    "synapse-federation-reader",
    "synapse-federation-sender",
    "synapse-media",
    "synapse-pusher",
    "nginx",
)
RECONCILE_DONE = "synapse_sferum: reconcile done"  # the provisioner's log line after each run
T = TypeVar("T")


@attrs.frozen
class Cluster:
    deployment: Deployment  # base_url: nginx, the only port clients and sferumctl use
    roster: DemoRoster
    accounts: dict[str, dict[str, Any]]  # person -> {"user_id", "password"}

    def user_id(self, person: str) -> str:
        return str(self.accounts[person]["user_id"])

    async def login(self, person: str) -> User:
        account = self.accounts[person]
        return await login(self.deployment.base_url, account["user_id"], account["password"])

    def alias(self, kind: str, scope: str) -> str:
        return f"#{kind}-{scope}:{SERVER}"

    def log(self, process: str) -> str:
        return self.deployment.synapse_log(process)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: PostgresCluster,
    demo_roster: DemoRoster,
) -> Iterator[Cluster]:
    database = postgres.create_database(f"hs_{SERVER.replace('.', '_')}")
    workers = (
        "--workers",
        str(len(CLIENT_WORKERS)),
        "--worker-hosts",
        ",".join(WORKER_HOSTS),
        "--internal-port",
        str(free_ports(internal_ports(len(CLIENT_WORKERS)))),
    )
    deployment = Deployment(tmp_path_factory.mktemp("workers") / SERVER, SERVER, database, workers)
    try:
        deployment.init()
        deployment.start()
        sferumctl("roster", "import", str(deployment.dir), str(demo_roster_folder()))
        # The pupils the tests sign in as: every other account only adds provisioning time.
        accounts = deployment.issue(*_pupils(demo_roster))
        # Every event of the first provisioning goes through the event persister.
        report = deployment.reconcile()
        assert report["failures"] == 0, (report, deployment.log_tail())
        yield Cluster(deployment, demo_roster, accounts)
    finally:
        deployment.stop()


def _pupils(roster: DemoRoster) -> tuple[str, str, str]:
    """Two classmates of 5a, and the pupil of 6b whom the roster re-import moves to 5a."""
    pupil, classmate = sorted(roster.students["5a"])[:2]
    return pupil, classmate, sorted(roster.students["6b"])[0]


# -- helpers -------------------------------------------------------------------------------


def _move_pupil(roster: Path, pupil: str, old: str, new: str) -> None:
    """Rewrites the enrollment row (old class, pupil) to the new class."""
    path = roster / "enrollments.csv"
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    header = rows[0]
    cls, user = header.index("classSourcedId"), header.index("userSourcedId")
    moved = 0
    for row in rows[1:]:
        if row[user] == pupil and row[cls] == old:
            row[cls] = new
            moved += 1
    assert moved == 1, (pupil, old, moved)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


async def _eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 10
) -> T:
    """Replication is asynchronous: retries `probe` until `done` holds, returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


async def _dm(user: User, target_user_id: str) -> Reply:
    return await user.create_room(is_direct=True, invite=[target_user_id])


async def _search_ids(user: User, user_id: str) -> set[str]:
    localpart = user_id.split(":")[0][1:]
    found = await user.call(
        "POST", "/user_directory/search", {"search_term": localpart, "limit": 50}
    )
    assert found.status == 200, found
    return {r["user_id"] for r in found.body["results"]}


def _refused(reply: Reply) -> bool:
    return (
        reply.status == 403 and reply.body.get("errcode") == "M_FORBIDDEN" and bool(reply.reason)
    )


# -- the test ------------------------------------------------------------------------------


async def test_worker_follows_a_reimported_roster_without_restart(
    cluster: Cluster, tmp_path: Path
) -> None:
    roster = cluster.roster
    pupil, classmate, moved = _pupils(roster)
    moved_id = cluster.user_id(moved)
    user = await cluster.login(pupil)
    moved_user = await cluster.login(moved)
    class_5a = await user.resolve(cluster.alias("class", "5a"))
    class_6b = await user.resolve(cluster.alias("class", "6b"))

    # 1. The workers enforce the rules; this also fills its caches for both pupils and rooms.
    ok = await _dm(user, cluster.user_id(classmate))
    assert ok.status == 200, ok
    refused = await _dm(user, moved_id)
    assert _refused(refused), refused
    joined = await user.call("POST", f"/rooms/{class_6b}/join", {})
    assert _refused(joined), joined  # caches #class-6b's planned members (with `moved`)
    classmate_seen = await _eventually(
        lambda: _search_ids(user, cluster.user_id(classmate)),
        lambda ids: cluster.user_id(classmate) in ids,
    )
    assert cluster.user_id(classmate) in classmate_seen
    assert moved_id not in await _search_ids(user, moved_id)
    assert class_6b in await moved_user.joined_rooms()

    # 2. A roster in which `moved` is in 5a is imported and reconciled; the workers run on.
    moved_roster = copy_roster(tmp_path / "roster")
    _move_pupil(moved_roster, moved, "6b", "5a")
    sferumctl("roster", "import", str(cluster.deployment.dir), str(moved_roster))
    report = cluster.deployment.reconcile()
    assert report["failures"] == 0, (report, cluster.deployment.log_tail())

    # The workers' cached Member of `moved` was invalidated: they are classmates now.
    now_ok = await _eventually(lambda: _dm(user, moved_id), lambda r: r.status == 200)
    assert now_ok.status == 200, now_ok
    assert moved_id in await _eventually(
        lambda: _search_ids(user, moved_id), lambda ids: moved_id in ids
    )
    rooms = await _eventually(
        moved_user.joined_rooms, lambda r: class_5a in r and class_6b not in r
    )
    assert class_5a in rooms and class_6b not in rooms, rooms

    # 3. Joins through the workers follow the new roster too: nobody of 5a joins #class-6b,
    # not even `moved`, whom the workers' stale planned members of #class-6b would still admit.
    again = await user.call("POST", f"/rooms/{class_6b}/join", {})
    assert _refused(again), again
    back = await moved_user.call("POST", f"/rooms/{class_6b}/join", {})
    assert _refused(back), back
    assert class_6b not in await moved_user.joined_rooms()

    # The module's background jobs and its admin API's reconciles ran on the background worker
    # only: the others have been up for longer than the start-up delay and never reconciled.
    assert RECONCILE_DONE in cluster.log("background")
    for process in ("main", *CLIENT_WORKERS, "event-persister", "media"):
        assert RECONCILE_DONE not in cluster.log(process), process


async def test_a_message_goes_through_a_client_worker_and_the_event_persister(
    cluster: Cluster,
) -> None:
    pupil, classmate, _ = _pupils(cluster.roster)
    user, reader = await cluster.login(pupil), await cluster.login(classmate)
    class_5a = await user.resolve(cluster.alias("class", "5a"))
    txn = f"workers-{time.monotonic_ns()}"
    path = f"/rooms/{urllib.parse.quote(class_5a)}/send/m.room.message/{txn}"
    sent = await user.call("PUT", path, {"msgtype": "m.text", "body": "через воркеров"})
    assert sent.status == 200, sent
    event_id = sent.body["event_id"]

    seen = await _eventually(lambda: _synced_ids(reader), lambda ids: event_id in ids)
    assert event_id in seen
    # A client worker took the send (its access log names the transaction) and the event
    # persister wrote the event (Synapse records the writer of every event).
    assert [w for w in CLIENT_WORKERS if txn in cluster.log(w)], "no client worker sent it"
    [(writer,)] = cluster.deployment.sql(
        "SELECT instance_name FROM events WHERE event_id = ?", event_id
    )
    assert writer == "event-persister"
    # The reader's syncs, sticky by user, all went to one client worker.
    syncs = [
        w for w in CLIENT_WORKERS if _served(cluster.log(w), cluster.user_id(classmate), "/sync")
    ]
    assert len(syncs) == 1, syncs


async def test_media_goes_through_the_media_worker(cluster: Cluster) -> None:
    pupil = await cluster.login(_pupils(cluster.roster)[2])
    uploaded = await upload_media(pupil, PNG)
    assert uploaded.status == 200, uploaded
    mxc = str(uploaded.body["content_uri"])
    assert await fetch_media(pupil, mxc) == 200
    media_id = mxc.rsplit("/", 1)[1]
    log = cluster.log("media")
    assert "/_matrix/media/v3/upload" in log and f"/download/{SERVER}/{media_id}" in log
    for process in ("main", *CLIENT_WORKERS):
        assert media_id not in cluster.log(process), process


def test_status_lists_every_process_and_stop_leaves_none(cluster: Cluster) -> None:
    """Last in the module: it stops the deployment."""
    status = sferumctl("status", str(cluster.deployment.dir))
    supervisor, *lines = status.stdout.splitlines()
    assert supervisor.startswith("supervisor: running (pid "), status.stdout
    assert [line.split(":")[0] for line in lines] == list(PROCESSES), status.stdout
    assert all("health ok" in line for line in lines), status.stdout
    pids = [
        int(line.split("(pid ")[1].split(")")[0].split(",")[0]) for line in [supervisor, *lines]
    ]

    sferumctl("stop", str(cluster.deployment.dir))
    assert [p for p in pids if _alive(p)] == []
    stopped = sferumctl("status", str(cluster.deployment.dir), check=False)
    assert stopped.stdout.splitlines() == [
        "supervisor: stopped",
        *(f"{name}: stopped" for name in PROCESSES),
    ]


def _alive(pid: int) -> bool:
    """Whether the process runs: it exists and is not a zombie (whose reaping is up to PID 1,
    as `sferumctl start` that spawned it has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _served(log: str, user_id: str, path: str) -> bool:
    """Whether Synapse's access log lines show a request of `user_id` for `path`."""
    return any(
        "Processed request" in line and user_id in line and path in line
        for line in log.splitlines()
    )


async def _synced_ids(user: User) -> set[str]:
    synced = await user.call("GET", "/sync?timeout=0")
    assert synced.status == 200, synced
    rooms = synced.body.get("rooms", {}).get("join", {}).values()
    return {e["event_id"] for room in rooms for e in room["timeline"]["events"]}
