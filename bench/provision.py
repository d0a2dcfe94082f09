#!/usr/bin/env python3
"""Measures a school's first provisioning, a member's latency during it, and a small re-import.

One real Synapse deployment (the integration harness: `sferumctl init`, a throwaway PostgreSQL,
the tests' rate limits, which keep Synapse's join limits) is made and started. A school is
generated with `tests/district.py` (one school, --pupils pupils, their guardians, 60 teachers
and 5 staff); then, in the same run:

* rooms: the roster is imported and the module's run that follows (it makes the rooms) is
  timed, from the import to the run's end (`reconcile-status`);
* the school's staff get accounts and their run puts them in; one of them is the member whose
  own requests are timed: a message sent into a room of theirs and read back with /sync
  (`since`, timeout 0), once a second from then on (idle for --idle-seconds first);
* memberships: everyone else gets an account in one request (not timed: passwords are
  hashed), and the run that follows is timed; printed: memberships made (joined members of
  provisioned rooms, from the database), seconds, memberships/s, and the first provisioning's
  seconds in all (rooms, staff, everyone else);
* baseline: raw `POST /_synapse/admin/v1/join/{room}`, by that staff member made a server
  admin, for --baseline-joins of the new accounts into as many fresh private rooms of theirs
  as the module works on at once (`provisioning.rooms_at_once`), one thread per room: an
  invite and a join each, as the provisioner's; printed: joins/s and provisioning/baseline;
* re-import: --changed of the pupils (at least one) move to another class of their grade; the
  roster is imported again and its run followed; printed: seconds and the events it added.

Last, p50/p99 of the member's send + /sync while idle, during the memberships run, during the
baseline and during the re-import.

    .venv/bin/python bench/provision.py [--pupils 200] [--changed 0.01] [--baseline-joins 300]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
)  # for the sferumctl subprocesses the harness runs

from synapse_sferum.config import ProvisioningConfig  # noqa: E402
from tests.district import LETTERS, generate_district  # noqa: E402
from tests.integration.harness import Deployment, PostgresCluster, sferumctl  # noqa: E402

SERVER_NAME = "provision-bench.test"
PASSWORD = "correct horse battery staple"
ROOMS_AT_ONCE = ProvisioningConfig().rooms_at_once
MEMBERSHIPS_SQL = (
    "SELECT count(*) FROM current_state_events c JOIN sferum_rooms r ON r.room_id = c.room_id"
    " WHERE c.type = 'm.room.member' AND c.membership = 'join' AND c.state_key != ?"
)


def call(
    method: str, url: str, token: str | None = None, body: Any = None, timeout: float = 60
) -> Any:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


@attrs.define
class Server:
    """The deployment, reached as its admin API's and Matrix clients' HTTP calls."""

    deployment: Deployment
    last_run: int = 0

    @property
    def base(self) -> str:
        return self.deployment.base_url

    def login(self, user_id: str, password: str) -> str:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
        }
        token: str = call("POST", f"{self.base}/_matrix/client/v3/login", body=body)[
            "access_token"
        ]
        return token

    def create_room(self, token: str, invite: tuple[str, ...] = ()) -> str:
        body = {"preset": "private_chat", "invite": list(invite)}
        room_id: str = call("POST", f"{self.base}/_matrix/client/v3/createRoom", token, body)[
            "room_id"
        ]
        return room_id

    def run_status(self, run: int) -> dict[str, Any] | None:
        try:
            status: dict[str, Any] = self.deployment.admin("reconcile-status", {"run": run})
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
        return status

    def follow_latest_run(self) -> dict[str, Any]:
        """Waits for the latest run asked for (the import's or the accounts'), without asking
        for another: its number is the highest the status endpoint knows."""
        run = self.last_run
        while self.run_status(run + 1) is not None:
            run += 1
        while True:
            status = self.run_status(run)
            assert status is not None
            if status["state"] == "finished":
                self.last_run = run
                return status
            time.sleep(0.2)

    def memberships(self, bot: str) -> int:
        [(count,)] = self.deployment.sql(MEMBERSHIPS_SQL, bot)
        return int(count)

    def events(self, besides_room: str) -> int:
        [(count,)] = self.deployment.sql(
            "SELECT count(*) FROM events WHERE room_id != ?", besides_room
        )
        return int(count)


class Prober(threading.Thread):
    """A member's own requests, once a second: a message sent and read back with /sync."""

    def __init__(self, server: Server, token: str, room_id: str):
        super().__init__(daemon=True)
        self._server, self._token, self.room_id = server, token, room_id
        self.phase = "idle"
        self.samples: dict[str, list[float]] = {}
        self._halt = threading.Event()
        self._since = call("GET", f"{server.base}/_matrix/client/v3/sync?timeout=0", token)[
            "next_batch"
        ]

    def run(self) -> None:
        n = 0
        while not self._halt.wait(1.0):
            n += 1
            started = time.monotonic()
            url = f"{self._server.base}/_matrix/client/v3/rooms/{self.room_id}/send"
            call(
                "PUT",
                f"{url}/m.room.message/probe{n}",
                self._token,
                {"msgtype": "m.text", "body": f"probe {n}"},
            )
            query = urllib.parse.urlencode({"since": self._since, "timeout": 0})
            sync = call("GET", f"{self._server.base}/_matrix/client/v3/sync?{query}", self._token)
            self._since = sync["next_batch"]
            self.samples.setdefault(self.phase, []).append(time.monotonic() - started)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def percentiles(samples: list[float]) -> str:
    if len(samples) < 2:
        return f"{len(samples)} samples"
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"p50 {cuts[49] * 1000:.0f} ms, p99 {cuts[98] * 1000:.0f} ms ({len(samples)} samples)"


def people_of(roster: Path) -> list[str]:
    with (roster / "users.csv").open(encoding="utf-8") as users:
        return [row["sourcedId"] for row in csv.DictReader(users)]


def move_pupils(roster: Path, share: float, seed: int) -> int:
    """Moves `share` of the pupils (at least one) to another class of their grade; how many."""
    path = roster / "enrollments.csv"
    with path.open(encoding="utf-8", newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        rows = list(reader)
    class_at, role_at = header.index("classSourcedId"), header.index("role")
    pupils = [row for row in rows if row[role_at] == "student"]
    moved = random.Random(seed).sample(pupils, max(1, math.ceil(share * len(pupils))))
    spellings = list(LETTERS.values())
    for row in moved:
        letter = row[class_at][-1]
        row[class_at] = row[class_at][:-1] + spellings[(spellings.index(letter) + 1) % 3]
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return len(moved)


def raw_joins(server: Server, admin_token: str, user_ids: list[str]) -> tuple[float, int]:
    """Seconds for the admin API to join `user_ids` into ROOMS_AT_ONCE fresh private rooms of
    the admin's, and how many joins the platform's rules refused."""
    rooms = [server.create_room(admin_token) for _ in range(ROOMS_AT_ONCE)]
    share = [user_ids[n :: len(rooms)] for n in range(len(rooms))]
    refused = []

    def join_all(room_id: str, users: list[str]) -> None:
        url = f"{server.base}/_synapse/admin/v1/join/{room_id}"
        for user_id in users:
            try:
                call("POST", url, admin_token, {"user_id": user_id})
            except urllib.error.HTTPError as e:
                if e.code != 403:
                    raise
                refused.append(user_id)

    threads = [
        threading.Thread(target=join_all, args=pair) for pair in zip(rooms, share, strict=True)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started, len(refused)


@contextmanager
def running_deployment(tmp: Path) -> Iterator[Deployment]:
    postgres = PostgresCluster()
    postgres.start()
    try:
        deployment = Deployment(tmp / "d", SERVER_NAME, postgres.create_database("hs"))
        deployment.init()
        # No periodic run: every run measured is the one an import or an issue asked for.
        deployment.override_module(
            "60-bench", "provisioning", {"reconcile_interval_seconds": 86400}
        )
        deployment.start()
        try:
            yield deployment
        finally:
            deployment.stop()
    finally:
        postgres.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=200)
    parser.add_argument("--changed", type=float, default=0.01, help="share of pupils moved")
    parser.add_argument("--baseline-joins", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--idle-seconds", type=float, default=15)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="provision-bench-"))
    tmp.chmod(0o755)
    try:
        with running_deployment(tmp) as deployment:
            measure(Server(deployment), tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(server: Server, tmp: Path, args: argparse.Namespace) -> None:
    deployment = server.deployment
    bot = f"@sferum:{SERVER_NAME}"
    admin = deployment.register_unlinked("bench-admin", PASSWORD, admin=True)
    admin_token = server.login(admin, PASSWORD)
    roster = tmp / "roster"
    size = generate_district(roster, 1, args.pupils, args.seed)
    print(f"school: {size.pupils} pupils, {size.guardians} guardians, "
          f"{size.teachers} teachers, {size.staff} staff, {size.classes} classes")  # fmt: skip
    server.follow_latest_run()  # the start-up run, if any

    started = time.monotonic()
    sferumctl("roster", "import", str(deployment.dir), str(roster))
    rooms_run = server.follow_latest_run()
    rooms_seconds = time.monotonic() - started
    rooms_made = rooms_run["reconcile"]["rooms_created"]
    print(f"rooms run: {rooms_made} rooms in {rooms_seconds:.1f} s "
          f"({rooms_made / rooms_seconds:.2f} rooms/s)")  # fmt: skip

    # The school's staff first: one of them is the member whose requests are timed, and the
    # baseline's room admin (a server admin, which Synapse's join API asks for).
    people = people_of(roster)
    staff = [p for p in people if "-s-" in p]
    accounts = deployment.admin("accounts", {"persons": staff}, timeout=600)["accounts"]
    started = time.monotonic()
    server.follow_latest_run()
    staff_seconds = time.monotonic() - started
    member, password = accounts[0]["user_id"], accounts[0]["password"]
    member_token = server.login(member, password)
    url = f"{server.base}/_synapse/admin/v2/users/{urllib.parse.quote(member)}"
    call("PUT", url, admin_token, {"admin": True})
    prober = Prober(server, member_token, server.create_room(member_token))
    prober.start()
    time.sleep(args.idle_seconds)

    before = server.memberships(bot)
    prober.phase = "issuing"
    issued_at = time.monotonic()
    others = [p for p in people if p not in set(staff)]
    issued = deployment.admin("accounts", {"persons": others}, timeout=1800)["accounts"]
    issue_seconds = time.monotonic() - issued_at
    print(f"issued {len(issued)} accounts in {issue_seconds:.1f} s (not provisioning)")
    prober.phase = "provisioning"
    started = time.monotonic()
    members_run = server.follow_latest_run()
    members_seconds = time.monotonic() - started
    prober.phase = "idle"
    memberships = server.memberships(bot) - before
    rate = memberships / members_seconds
    print(f"memberships run: {memberships} memberships in {members_seconds:.1f} s "
          f"({rate:.1f}/s), report {members_run['reconcile']}")  # fmt: skip
    total = rooms_seconds + staff_seconds + members_seconds
    print(f"first provisioning: {total:.1f} s (rooms, staff's memberships, everyone else's)")

    users = [a["user_id"] for a in issued][: args.baseline_joins]
    prober.phase = "baseline"
    seconds, failed = raw_joins(server, member_token, users)
    prober.phase = "idle"
    baseline = (len(users) - failed) / seconds
    print(f"baseline: {len(users) - failed} admin-API joins ({failed} refused) into "
          f"{ROOMS_AT_ONCE} rooms in {seconds:.1f} s ({baseline:.1f}/s); "
          f"provisioning/baseline {rate / baseline:.2f}")  # fmt: skip

    moved = move_pupils(roster, args.changed, args.seed)
    events_before = server.events(besides_room=prober.room_id)
    prober.phase = "re-import"
    started = time.monotonic()
    sferumctl("roster", "import", str(deployment.dir), str(roster))
    again = server.follow_latest_run()
    seconds = time.monotonic() - started
    prober.phase = "idle"
    print(f"re-import, {moved} pupils moved: {seconds:.1f} s, "
          f"{server.events(besides_room=prober.room_id) - events_before} events, "
          f"report {again['reconcile']}")  # fmt: skip
    time.sleep(args.idle_seconds)
    prober.stop()
    for phase in ("idle", "provisioning", "baseline", "re-import"):
        print(f"member's send + /sync, {phase}: {percentiles(prober.samples.get(phase, []))}")


if __name__ == "__main__":
    main()
