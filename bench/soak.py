#!/usr/bin/env python3
"""Soak: a school's members use one deployment for minutes on end, with and without the module.

Two deployments on one throwaway PostgreSQL, one after the other, each loaded alike:

* with the module: a generated school (`tests/district.py`, `--pupils` of them with their
  guardians, teachers and staff) imported, accounts issued, rooms provisioned; each member
  posts into the room of their group (a pupil into the class chat, a guardian into the class's
  parents' chat, a teacher or administrator into the staff room);
* without (the baseline): the same init with `modules: []`, the same people as plain accounts,
  one private room per group with the same members, made through the client API.

Then `--members` of them (pupils first, then guardians, then staff, in the roster's order) run
for `--minutes`: each keeps a /sync long-poll going, posts every `--post-every` seconds (a
random phase, so posts spread), and reads the room's last page of history every tenth post.
`--dm-share` of the pupils post into a direct chat with a classmate instead. Printed per run:

* send-to-sync latency: for every message and every other member who syncs it, the time from
  just before the send to that member's sync bringing it in; p50 and p99;
* errors: any failed request (send, sync, history), which must stay 0;
* memory: the RSS of every process of the deployment (run/*.pid), sampled every 10 s, and its
  least-squares slope in MB per minute after the first fifth of the run (warm-up);
* the with/without ratio of the latencies.

    .venv/bin/python bench/soak.py [--minutes 10] [--members 300] [--pupils 100]
        [--post-every 60] [--dm-share 0.1] [--workers N]

`--workers N` passes `--workers N` to `sferumctl init` (a worker deployment behind its reverse
proxy; the clients talk to its public port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
import attrs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
)  # for the sferumctl subprocesses the harness runs

from sferum_shared.rooms import RoomKey, RoomKind  # noqa: E402
from tests.district import generate_district  # noqa: E402
from tests.integration.harness import Deployment, PostgresCluster, sferumctl  # noqa: E402

MARK = "soak "  # every measured message's body starts with it, then its token
SYNC_TIMEOUT_MS = 30_000
MEMORY_EVERY = 10.0
WARM_UP_SHARE = 0.2
SYNC_FILTER = json.dumps(
    {
        "room": {"timeline": {"limit": 50}, "state": {"lazy_load_members": True}},
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    }
)
# Only what makes Synapse's start-up quick; every rate limit is the deployment's own, as a
# school behind one address would have it.
OVERRIDES = {"background_updates": {"sleep_enabled": False}}


# -- the school's groups, read from the roster ----------------------------------------------------


@attrs.frozen
class Group:
    """People who post into one room: its key (for the module's room) and its members."""

    key: RoomKey
    people: tuple[str, ...]


@attrs.frozen
class School:
    groups: tuple[Group, ...]
    group_of: dict[str, RoomKey]  # person -> the room they post into
    classmates: dict[str, tuple[str, ...]]  # pupil -> the other pupils of their class
    order: tuple[str, ...]  # pupils, then guardians, then staff


def _rows(roster: Path, name: str) -> list[dict[str, str]]:
    with (roster / name).open(encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))


def read_school(roster: Path) -> School:
    users = {row["sourcedId"]: row for row in _rows(roster, "users.csv")}
    pupils_of: dict[str, list[str]] = defaultdict(list)
    teachers_of: dict[str, list[str]] = defaultdict(list)
    class_of: dict[str, str] = {}
    for row in _rows(roster, "enrollments.csv"):
        if row["role"] == "student":
            pupils_of[row["classSourcedId"]].append(row["userSourcedId"])
            class_of[row["userSourcedId"]] = row["classSourcedId"]
        else:
            teachers_of[row["classSourcedId"]].append(row["userSourcedId"])
    group_of: dict[str, RoomKey] = {}
    members: dict[RoomKey, list[str]] = defaultdict(list)
    pupils = [p for p, row in users.items() if row["role"] == "student"]
    guardians = [p for p, row in users.items() if row["role"] == "parent"]
    staff = [p for p, row in users.items() if row["role"] in ("teacher", "administrator")]
    for pupil in pupils:
        group_of[pupil] = RoomKey(RoomKind.CLASS_CHAT, class_of[pupil])
    for guardian in guardians:
        children = [c for c in users[guardian]["agentSourcedIds"].split(",") if c in class_of]
        if children:
            group_of[guardian] = RoomKey(RoomKind.PARENTS, class_of[children[0]])
    for person in staff:
        group_of[person] = RoomKey(RoomKind.STAFF, users[person]["orgSourcedIds"])
    for person, key in group_of.items():
        members[key].append(person)
    classmates = {
        pupil: tuple(p for p in pupils_of[class_of[pupil]] if p != pupil) for pupil in pupils
    }
    ordered = tuple(p for p in (*pupils, *guardians, *staff) if p in group_of)
    groups = tuple(Group(key, tuple(people)) for key, people in members.items())
    return School(groups, group_of, classmates, ordered)


# -- the two deployments ----------------------------------------------------------------------


@attrs.define
class Server:
    name: str
    deployment: Deployment
    credentials: dict[str, tuple[str, str]] = attrs.Factory(dict)  # person -> (user, password)
    rooms: dict[RoomKey, str] = attrs.Factory(dict)
    admin: tuple[str, str] = ("", "")  # a server admin's (user, password): signs members in


def setup_with_module(server: Server, roster: Path, school: School, people: list[str]) -> None:
    deployment = server.deployment
    deployment.init()
    deployment.start()
    sferumctl("roster", "import", str(deployment.dir), str(roster))
    server.admin = (
        deployment.register_unlinked("soakadmin", "soak-admin", admin=True),
        "soak-admin",
    )
    accounts = deployment.issue(*people)
    server.credentials = {p: (a["user_id"], a["password"]) for p, a in accounts.items()}
    started = time.perf_counter()
    report = deployment.reconcile()
    print(f"[with] provisioned in {time.perf_counter() - started:.0f} s: {report}", flush=True)
    if report.get("failures"):
        raise RuntimeError(f"reconcile failed: {report}")
    wanted = {school.group_of[p] for p in people}
    server.rooms = {key: _resolve(deployment, key) for key in wanted}


def _resolve(deployment: Deployment, key: RoomKey) -> str:
    alias = urllib.parse.quote(key.alias(deployment.server_name))
    url = f"{deployment.base_url}/_matrix/client/v3/directory/room/{alias}"
    with urllib.request.urlopen(url, timeout=30) as response:
        room_id: str = json.loads(response.read())["room_id"]
    return room_id


async def setup_without_module(server: Server, school: School, people: list[str]) -> None:
    deployment = server.deployment
    deployment.init()
    deployment.start_without_module()
    for n, person in enumerate(people):
        password = f"soak-{n}"
        user_id = deployment.register_unlinked(f"soak{n}", password)
        server.credentials[person] = (user_id, password)
    # A server admin makes the rooms and puts the members in with Synapse's admin API, which
    # no client rate limit slows down (the module's provisioning is not limited either).
    owner_id = deployment.register_unlinked("soakowner", "soak-owner", admin=True)
    server.admin = (owner_id, "soak-owner")
    async with aiohttp.ClientSession() as session:
        owner = await Member.login(session, deployment.base_url, owner_id, "soak-owner")
        # Nor room creation's: the module's rooms are made by the platform, which no limit slows.
        await request(
            session,
            "POST",
            f"{deployment.base_url}/_synapse/admin/v1/users/{_q(owner_id)}/override_ratelimit",
            {"messages_per_second": 0, "burst_count": 0},
            owner.token,
        )
        for group in school.groups:
            present = [server.credentials[p][0] for p in group.people if p in server.credentials]
            if not present:
                continue
            created = await owner.call("POST", "/createRoom", {"preset": "private_chat"})
            room_id = created["room_id"]
            for user_id in present:
                await request(
                    session,
                    "POST",
                    f"{deployment.base_url}/_synapse/admin/v1/join/{_q(room_id)}",
                    {"user_id": user_id},
                    owner.token,
                )
            server.rooms[group.key] = room_id


# -- members ----------------------------------------------------------------------------------


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


@attrs.define
class Tally:
    """What one run measured."""

    sent_at: dict[str, float] = attrs.Factory(dict)  # token -> monotonic time before the send
    latencies: list[float] = attrs.Factory(list)  # seconds, one per (message, other member)
    errors: dict[str, int] = attrs.Factory(lambda: defaultdict(int))
    messages: int = 0


RATE_LIMIT_WAITS = 20


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    timeout: float = 60,
) -> tuple[dict[str, Any], int]:
    """One client request, as Matrix clients make it: a 429 is waited out (its retry_after_ms)
    and tried again. Returns the answer and how many times it waited; raises on any other
    failure."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for waits in range(RATE_LIMIT_WAITS):
        async with session.request(
            method, url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as reply:
            answer: dict[str, Any] = await reply.json(content_type=None) or {}
            if reply.status == 200:
                return answer, waits
            if reply.status != 429:
                raise RuntimeError(f"{method} {url.split('?')[0]}: {reply.status} {answer}")
        await asyncio.sleep(answer.get("retry_after_ms", 1000) / 1000)
    raise RuntimeError(f"{method} {url.split('?')[0]}: still rate-limited")


@attrs.define
class Member:
    session: aiohttp.ClientSession
    base_url: str
    user_id: str
    token: str
    txn: itertools.count[int] = attrs.Factory(itertools.count)
    rate_limited: int = 0  # requests that met a 429 and waited it out

    @classmethod
    async def login(
        cls, session: aiohttp.ClientSession, base_url: str, user_id: str, password: str
    ) -> Member:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
        }
        answer, waits = await request(session, "POST", f"{base_url}/_matrix/client/v3/login", body)
        return cls(
            session, base_url, answer["user_id"], answer["access_token"], rate_limited=waits
        )

    async def call(
        self, method: str, path: str, body: Any = None, timeout: float = 60
    ) -> dict[str, Any]:
        url = f"{self.base_url}/_matrix/client/v3{path}"
        answer, waits = await request(self.session, method, url, body, self.token, timeout)
        self.rate_limited += waits
        return answer


INITIAL_SYNCS_AT_ONCE = 8
INITIAL_SYNC_TIMEOUT = 600.0


async def first_sync(member: Member, at_once: asyncio.Semaphore) -> str:
    """The member's starting point: what is already there is not measured. A member's first
    sync carries every room they are in (a dozen, with the module's): 300 at once outlast any
    client's patience, and members' phones made theirs long before, one by one."""
    async with at_once:
        path = f"/sync?timeout=0&filter={_q(SYNC_FILTER)}"
        reply = await member.call("GET", path, timeout=INITIAL_SYNC_TIMEOUT)
    return str(reply["next_batch"])


async def sync_loop(member: Member, since: str, tally: Tally, stop: asyncio.Event) -> None:
    while not stop.is_set():
        path = f"/sync?timeout={SYNC_TIMEOUT_MS}&since={_q(since)}&filter={_q(SYNC_FILTER)}"
        try:
            reply = await member.call("GET", path, timeout=SYNC_TIMEOUT_MS / 1000 + 30)
        except Exception as e:  # counted, and the loop goes on as a client's would
            tally.errors[f"sync: {str(e)[:80]}"] += 1
            await asyncio.sleep(1)
            continue
        now = time.monotonic()
        since = reply["next_batch"]
        for room in reply.get("rooms", {}).get("join", {}).values():
            for event in room.get("timeline", {}).get("events", []):
                body = event.get("content", {}).get("body", "")
                sent = tally.sent_at.get(body[len(MARK) :]) if body.startswith(MARK) else None
                if event.get("sender") != member.user_id and sent is not None:
                    tally.latencies.append(now - sent)


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleeps, but no longer than until the run stops."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def post_loop(
    member: Member, room_id: str, every: float, tally: Tally, stop: asyncio.Event
) -> None:
    await asyncio.sleep(random.uniform(0, every))
    for n in itertools.count(1):
        if stop.is_set():
            return
        token = f"{member.user_id}/{n}"
        tally.sent_at[token] = time.monotonic()
        body = {"msgtype": "m.text", "body": f"{MARK}{token}"}
        try:
            await member.call(
                "PUT", f"/rooms/{_q(room_id)}/send/m.room.message/{next(member.txn)}", body
            )
            tally.messages += 1
            if n % 10 == 0:
                await member.call("GET", f"/rooms/{_q(room_id)}/messages?dir=b&limit=20")
        except Exception as e:
            tally.errors[f"send: {str(e)[:80]}"] += 1
        await pause(stop, every)


# -- memory -----------------------------------------------------------------------------------


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _processes(deployment: Deployment) -> dict[str, int]:
    found = {}
    for pid_file in sorted((deployment.dir / "run").glob("*.pid")):
        try:
            found[pid_file.stem] = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return found


async def sample_memory(
    deployment: Deployment, samples: dict[str, list[tuple[float, float]]], stop: asyncio.Event
) -> None:
    started = time.monotonic()
    while not stop.is_set():
        for name, pid in _processes(deployment).items():
            rss = _rss_mb(pid)
            if rss is not None:
                samples[name].append(((time.monotonic() - started) / 60, rss))
        await pause(stop, MEMORY_EVERY)


def slope(points: Iterable[tuple[float, float]]) -> float:
    """Least-squares slope of (minutes, MB): MB per minute."""
    minutes, megabytes = zip(*points, strict=True)
    return statistics.linear_regression(minutes, megabytes).slope


# -- a run ------------------------------------------------------------------------------------


@attrs.frozen
class Result:
    name: str
    messages: int
    deliveries: int
    p50: float
    p99: float
    errors: dict[str, int]
    rate_limited: int  # the members' 429s, waited out as clients do
    memory: dict[str, tuple[float, float, float]]  # process -> (first MB, last MB, MB/min)


async def soak(
    server: Server, school: School, people: list[str], args: argparse.Namespace
) -> Result:
    rng = random.Random(args.seed)
    tally = Tally()
    stop = asyncio.Event()
    memory: dict[str, list[tuple[float, float]]] = defaultdict(list)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        # The members signed in long before (300 sign-ins from the school's one address would
        # meet the login limit for minutes): a server admin hands each an access token.
        base_url = server.deployment.base_url
        admin = await Member.login(session, base_url, *server.admin)
        members: dict[str, Member] = {}
        at_once = asyncio.Semaphore(8)

        async def sign_in(person: str) -> None:
            user_id = server.credentials[person][0]
            async with at_once:
                answer, _ = await request(
                    session,
                    "POST",
                    f"{base_url}/_synapse/admin/v1/users/{_q(user_id)}/login",
                    {},
                    admin.token,
                )
            members[person] = Member(session, base_url, user_id, answer["access_token"])

        await asyncio.gather(*(sign_in(p) for p in people))
        targets = await _targets(server, school, people, members, args.dm_share, rng)
        print(f"[{server.name}] {len(members)} members signed in; soaking", flush=True)
        tasks = [asyncio.create_task(sample_memory(server.deployment, memory, stop))]
        syncing = asyncio.Semaphore(INITIAL_SYNCS_AT_ONCE)
        starts = await asyncio.gather(*(first_sync(m, syncing) for m in members.values()))
        tasks += [
            asyncio.create_task(sync_loop(m, since, tally, stop))
            for m, since in zip(members.values(), starts, strict=True)
        ]
        tasks += [
            asyncio.create_task(post_loop(members[p], targets[p], args.post_every, tally, stop))
            for p in people
        ]
        await asyncio.sleep(args.minutes * 60)
        stop.set()
        await asyncio.sleep(1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    latencies = sorted(tally.latencies) or [float("nan")]
    warm = {
        name: [p for p in points if p[0] >= args.minutes * WARM_UP_SHARE]
        for name, points in memory.items()
    }
    return Result(
        name=server.name,
        messages=tally.messages,
        deliveries=len(tally.latencies),
        p50=latencies[len(latencies) // 2],
        p99=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        errors=dict(tally.errors),
        rate_limited=sum(m.rate_limited for m in members.values()),
        memory={
            name: (points[0][1], points[-1][1], slope(points) if len(points) > 2 else 0.0)
            for name, points in warm.items()
            if points
        },
    )


async def _targets(
    server: Server,
    school: School,
    people: list[str],
    members: dict[str, Member],
    dm_share: float,
    rng: random.Random,
) -> dict[str, str]:
    """The room each member posts into: their group's, or for some pupils a direct chat with a
    classmate (made by the first of the two, so each pair shares one)."""
    targets = {p: server.rooms[school.group_of[p]] for p in people}
    pupils = [p for p in people if school.group_of[p].kind is RoomKind.CLASS_CHAT]
    chosen = set(rng.sample(pupils, round(len(pupils) * dm_share)))
    paired: set[str] = set()
    for pupil in sorted(chosen):
        if pupil in paired:
            continue
        mates = [m for m in school.classmates[pupil] if m in members and m not in paired]
        if not mates:
            continue
        mate = mates[0]
        created = await members[pupil].call(
            "POST",
            "/createRoom",
            {"is_direct": True, "invite": [members[mate].user_id]},
        )
        await members[mate].call("POST", f"/rooms/{_q(created['room_id'])}/join", {})
        targets[pupil] = targets[mate] = created["room_id"]
        paired |= {pupil, mate}
    return targets


def _print(result: Result) -> None:
    print(
        f"[{result.name}] messages {result.messages}, deliveries {result.deliveries}, "
        f"send-to-sync p50 {result.p50 * 1000:.0f} ms, p99 {result.p99 * 1000:.0f} ms, "
        f"errors {sum(result.errors.values())} {result.errors or ''}, "
        f"429s waited out {result.rate_limited}"
    )
    for name, (first, last, per_minute) in sorted(result.memory.items()):
        print(
            f"[{result.name}]   {name:24} RSS {first:6.0f} → {last:6.0f} MB, "
            f"slope {per_minute:+.2f} MB/min"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--members", type=int, default=300)
    parser.add_argument("--pupils", type=int, default=100, help="pupils of the generated school")
    parser.add_argument("--post-every", type=float, default=60, help="seconds between posts")
    parser.add_argument("--dm-share", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=0, help="sferumctl init --workers N")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    # A SIGTERM (timeout(1), say) unwinds like Ctrl-C, so every server started here is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    root = Path(tempfile.mkdtemp(prefix="sferum-soak-"))
    roster = root / "roster"
    generate_district(roster, schools=1, pupils_per_school=args.pupils, seed=args.seed)
    school = read_school(roster)
    people = list(school.order[: args.members])
    print(f"{len(people)} members of {len(school.order)} people, {len(school.groups)} rooms")
    postgres = PostgresCluster()
    postgres.start()
    extra = ("--workers", str(args.workers)) if args.workers else ()
    results = []
    try:
        for name, with_module in (("without", False), ("with", True)):
            database = postgres.create_database(f"soak_{name}")
            server = Server(
                name, Deployment(root / name, f"{name}.test", database, extra, OVERRIDES)
            )
            try:
                if with_module:
                    setup_with_module(server, roster, school, people)
                else:
                    asyncio.run(setup_without_module(server, school, people))
                results.append(asyncio.run(soak(server, school, people, args)))
                _print(results[-1])
            finally:
                server.deployment.stop()
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)
    without, with_module_result = results
    errors = sum(sum(r.errors.values()) for r in results)
    print(
        f"send-to-sync with/without: p50 {with_module_result.p50 / without.p50:.2f}, "
        f"p99 {with_module_result.p99 / without.p99:.2f}; errors {errors} "
        f"({'OK' if errors == 0 else 'NOT MET'})"
    )


if __name__ == "__main__":
    main()
