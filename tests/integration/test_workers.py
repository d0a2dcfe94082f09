"""The module under Synapse workers (docs/architecture.md): main plus one generic worker, Redis,
PostgreSQL.

Clients talk only to the worker; the roster import, the accounts and the reconcile go to main.
The worker's caches of the module (`_member`, `_planned_members`, ...) are warmed first, then
a re-imported roster moves a pupil to another class: the worker, never restarted, must answer
by the new roster, which it can only do if main's `invalidate_cache` reached it by replication.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import yaml

from tests.integration.clients import Reply, User, login
from tests.integration.conftest import DemoRoster
from tests.integration.harness import (
    REPO,
    Deployment,
    PostgresCluster,
    copy_roster,
    demo_roster_folder,
    free_port,
    sferumctl,
)

pytestmark = pytest.mark.integration

SERVER = "workers.test"
WORKER = "worker1"
RECONCILE_DONE = "synapse_sferum: reconcile done"  # the provisioner's log line after each run
T = TypeVar("T")


# -- processes --------------------------------------------------------------------------------


def _spawn(argv: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM by PID, then SIGKILL if it lingers; always reaps it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"(no {path})"
    return f"== {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_redis(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"redis-server exited {process.returncode}\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"redis-server did not answer PING on {port}\n{_tail(log)}")


def _wait_health(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url}: process exited {process.returncode}\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url}/health did not answer within {timeout} s\n{_tail(log)}")


def _worker_files(deployment: Deployment, worker_port: int) -> Path:
    """The worker's own YAML and log config, outside conf.d (which main loads too)."""
    log_config: dict[str, Any] = yaml.safe_load((deployment.dir / "log.config").read_text())
    for handler in log_config.get("handlers", {}).values():
        if "filename" in handler:
            handler["filename"] = str(deployment.dir / "logs" / f"{WORKER}.log")
    worker_log_config = deployment.dir / f"{WORKER}.log.config"
    worker_log_config.write_text(yaml.safe_dump(log_config))
    worker_yaml = deployment.dir / f"{WORKER}.yaml"
    worker_yaml.write_text(
        yaml.safe_dump(
            {
                "worker_app": "synapse.app.generic_worker",
                "worker_name": WORKER,
                "worker_listeners": [
                    {
                        "type": "http",
                        "port": worker_port,
                        "bind_addresses": ["127.0.0.1"],
                        "tls": False,
                        "resources": [{"names": ["client"], "compress": False}],
                    }
                ],
                "worker_log_config": str(worker_log_config),
            }
        )
    )
    return worker_yaml


def _worker_overrides(deployment: Deployment, replication_port: int, redis_port: int) -> None:
    """conf.d/60-workers.yaml: main keeps its client listener and gains a replication one."""
    overrides = {
        "listeners": [
            {
                "port": deployment.port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client", "federation"], "compress": False}],
            },
            {
                "port": replication_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "resources": [{"names": ["replication"], "compress": False}],
            },
        ],
        "redis": {"enabled": True, "host": "127.0.0.1", "port": redis_port},
        "instance_map": {"main": {"host": "127.0.0.1", "port": replication_port}},
        "worker_replication_secret": "sferum-test-worker-secret",
    }
    (deployment.dir / "conf.d" / "60-workers.yaml").write_text(yaml.safe_dump(overrides))


@attrs.frozen
class Cluster:
    deployment: Deployment  # main: sferumctl, roster, accounts, reconcile
    worker_url: str  # clients: everything else
    roster: DemoRoster
    accounts: dict[str, dict[str, Any]]  # person -> {"user_id", "password"}

    def user_id(self, person: str) -> str:
        return str(self.accounts[person]["user_id"])

    async def login(self, person: str) -> User:
        """Logs in through the worker (the module's password checker runs there too)."""
        account = self.accounts[person]
        return await login(self.worker_url, account["user_id"], account["password"])

    def alias(self, kind: str, scope: str) -> str:
        return f"#{kind}-{scope}:{SERVER}"


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: PostgresCluster,
    demo_roster: DemoRoster,
) -> Iterator[Cluster]:
    # scripts/test installs both: redis-server from apt, Synapse's `redis` extra from setup.cfg.
    redis_server = shutil.which("redis-server")
    assert redis_server is not None, "redis-server is not installed"
    root = tmp_path_factory.mktemp("workers")
    database = postgres.create_database(f"hs_{SERVER.replace('.', '_')}")
    deployment = Deployment(root / SERVER, SERVER, database)
    redis_port, replication_port, worker_port = free_port(), free_port(), free_port()
    redis_log = root / "redis.log"
    worker_log = deployment.dir / "logs" / f"{WORKER}.out"
    redis = _spawn(
        [
            redis_server,
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ],
        redis_log,
    )
    worker: subprocess.Popen[bytes] | None = None
    try:
        _wait_redis(redis_port, redis, redis_log)
        deployment.init()
        _worker_overrides(deployment, replication_port, redis_port)
        deployment.start()  # main only
        worker_yaml = _worker_files(deployment, worker_port)
        config_args = [
            arg
            for path in [
                deployment.dir / "homeserver.yaml",
                *sorted((deployment.dir / "conf.d").glob("*.yaml")),
                worker_yaml,
            ]
            for arg in ("-c", str(path))
        ]
        python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        worker = _spawn(
            [sys.executable, "-m", "synapse.app.generic_worker", *config_args],
            worker_log,
            PYTHONPATH=python_path,
        )
        worker_url = f"http://127.0.0.1:{worker_port}"
        _wait_health(worker_url, worker, worker_log, timeout=60)
        sferumctl("roster", "import", str(deployment.dir), str(demo_roster_folder()))
        # Every pupil of both classes: the adults' accounts would only add provisioning time.
        pupils = sorted(demo_roster.students["5a"] | demo_roster.students["6b"])
        accounts = deployment.issue(*pupils)
        report = deployment.reconcile()
        assert report["failures"] == 0, (report, deployment.log_tail())
        yield Cluster(deployment, worker_url, demo_roster, accounts)
    finally:
        if worker is not None:
            _stop(worker)
        deployment.stop()
        _stop(redis)


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
    pupil, classmate = sorted(roster.students["5a"])[:2]
    moved = sorted(roster.students["6b"])[0]
    moved_id = cluster.user_id(moved)
    user = await cluster.login(pupil)
    moved_user = await cluster.login(moved)
    class_5a = await user.resolve(cluster.alias("class", "5a"))
    class_6b = await user.resolve(cluster.alias("class", "6b"))

    # 1. The worker enforces the rules; this also fills its caches for both pupils and rooms.
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

    # 2. Main imports a roster in which `moved` is in 5a, and reconciles; the worker runs on.
    moved_roster = copy_roster(tmp_path / "roster")
    _move_pupil(moved_roster, moved, "6b", "5a")
    sferumctl("roster", "import", str(cluster.deployment.dir), str(moved_roster))
    report = cluster.deployment.reconcile()
    assert report["failures"] == 0, (report, cluster.deployment.log_tail())

    # The worker's cached Member of `moved` was invalidated: they are classmates now.
    now_ok = await _eventually(lambda: _dm(user, moved_id), lambda r: r.status == 200)
    assert now_ok.status == 200, now_ok
    assert moved_id in await _eventually(
        lambda: _search_ids(user, moved_id), lambda ids: moved_id in ids
    )
    rooms = await _eventually(
        moved_user.joined_rooms, lambda r: class_5a in r and class_6b not in r
    )
    assert class_5a in rooms and class_6b not in rooms, rooms

    # 3. Joins through the worker follow the new roster too: nobody of 5a joins #class-6b,
    # not even `moved`, whom the worker's stale planned members of #class-6b would still admit.
    again = await user.call("POST", f"/rooms/{class_6b}/join", {})
    assert _refused(again), again
    back = await moved_user.call("POST", f"/rooms/{class_6b}/join", {})
    assert _refused(back), back
    assert class_6b not in await moved_user.joined_rooms()

    # Background jobs (the start-up and periodic reconciles) ran on main only: the worker has
    # been up for longer than the start-up delay and never reconciled.
    logs = cluster.deployment.dir / "logs"
    assert RECONCILE_DONE in (logs / "homeserver.log").read_text(errors="replace")
    assert RECONCILE_DONE not in (logs / f"{WORKER}.log").read_text(errors="replace")
