#!/usr/bin/env python3
"""Measures what the module costs Synapse (targets: sends ≥ 0.95, joins ≥ 0.90 of without).

Two real Synapse deployments are made with the integration harness (`sferumctl init`, SQLite,
the test rate limits of TEST_OVERRIDES, and on both conf.d/55-bench.yaml lifting the limits on
a user's own joins and invites, which the tests keep), started side by side:

* with the module: the demo roster imported, accounts issued for two teachers, rooms
  reconciled; the teachers are the two users;
* without: the same init, then conf.d/60-no-modules.yaml sets `modules: []` (Synapse is started
  through sferumctl's service code, as `sferumctl start` refuses a config without the module);
  its log is checked to show no module loaded, and two users are registered with the shared
  secret.

On each, user 1 makes four private rooms (through the module's rules where it runs), and raw
client-server calls (aiohttp, one keep-alive session per user) measure:

* sends/s: user 1 sends N messages one after the other into a room of 2; the same with
  8 requests in flight; and N/2 one after the other into a room whose state holds
  --state extra events (as a class chat holds a hundred members and a school space thousands:
  with the module's check_event_allowed and on_new_event callbacks registered, Synapse loads
  the room's whole state for every event);
* joins/s: N cycles of invite, join, leave in a room of 1, and in one with --state extra
  events; only the joins are timed (the invites and leaves are printed for information).

Each metric runs on both servers back to back, in alternating order, for several short rounds,
so that the noise of a shared machine falls on both alike. The ratio with/without is taken per
round (the two runs of a round are seconds apart) and its median over the rounds is the result;
the ratio of the median rates is printed beside it. At the end each server's log is searched
for Synapse's log-context warnings (work still running in a finished request's context), which
cost time and show where callbacks hold Synapse up.

    .venv/bin/python bench/overhead.py [--rounds 5] [--messages 80] [--joins 20] [--state 200]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
)  # for the sferumctl subprocesses the harness runs

from tests.integration.harness import (  # noqa: E402
    Deployment,
    demo_roster_folder,
    sferumctl,
)

TEACHERS = ("t-1", "t-2")  # two teachers of the demo roster: they may create groups
CONCURRENCY = 8
SENDS_TARGET = 0.95
JOINS_TARGET = 0.90
LOADED_MODULE = "Loaded module"  # what Synapse logs for each module it loads
LOGCONTEXT_WARNING = "synapse.logging.context - "  # the logger of Synapse's log-context checks


def _unlimited() -> dict[str, int]:
    return {"per_second": 1000, "burst_count": 1000}


# The tests keep Synapse's limits on a user's own joins and invites (a join in ten seconds after
# ten): lift them on both servers alike, or the join cycles would measure the limiter.
BENCH_OVERRIDES = {
    "rc_joins": {"local": _unlimited(), "remote": _unlimited()},
    "rc_joins_per_room": _unlimited(),
    "rc_invites": {"per_room": _unlimited(), "per_user": _unlimited(), "per_issuer": _unlimited()},
}
FILLER_STATE = "ru.sferum.bench.filler"


@attrs.frozen
class Client:
    session: aiohttp.ClientSession
    base_url: str
    user_id: str
    token: str

    async def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        async with self.session.request(
            method,
            f"{self.base_url}/_matrix/client/v3{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            reply: dict[str, Any] = await response.json(content_type=None) or {}
            if response.status != 200:
                raise RuntimeError(f"{method} {path} as {self.user_id}: {response.status} {reply}")
            return reply


async def login(session: aiohttp.ClientSession, base_url: str, user: str, password: str) -> Client:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    }
    async with session.post(f"{base_url}/_matrix/client/v3/login", json=body) as response:
        reply = await response.json()
        if response.status != 200:
            raise RuntimeError(f"login {user}: {response.status} {reply}")
    return Client(session, base_url, reply["user_id"], reply["access_token"])


_txn = itertools.count()


def _room(room_id: str) -> str:
    return urllib.parse.quote(room_id)


async def send(client: Client, room_id: str, text: str) -> None:
    path = f"/rooms/{_room(room_id)}/send/m.room.message/b{os.getpid()}-{next(_txn)}"
    await client.call("PUT", path, {"msgtype": "m.text", "body": text})


@attrs.define
class Server:
    """One deployment under test, with its two logged-in users and their rooms."""

    name: str
    deployment: Deployment
    credentials: list[tuple[str, str]] = attrs.field(factory=list)  # (user, password) × 2
    users: list[Client] = attrs.field(factory=list)
    send_room: str = ""
    join_room: str = ""
    big_room: str = ""  # a room of 2 with many state events
    big_join_room: str = ""  # the same, for join cycles

    async def connect(self) -> None:
        for user, password in self.credentials:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY * 2))
            self.users.append(await login(session, self.deployment.base_url, user, password))
        owner, other = self.users
        body = {"preset": "private_chat", "name": "bench: sends", "invite": [other.user_id]}
        self.send_room = (await owner.call("POST", "/createRoom", body))["room_id"]
        await other.call("POST", f"/rooms/{_room(self.send_room)}/join", {})
        body = {"preset": "private_chat", "name": "bench: joins"}
        self.join_room = (await owner.call("POST", "/createRoom", body))["room_id"]

    async def fill_big_rooms(self, state_events: int) -> None:
        owner, other = self.users
        body = {"preset": "private_chat", "name": "bench: big state", "invite": [other.user_id]}
        self.big_room = (await owner.call("POST", "/createRoom", body))["room_id"]
        await other.call("POST", f"/rooms/{_room(self.big_room)}/join", {})
        body = {"preset": "private_chat", "name": "bench: big state joins"}
        self.big_join_room = (await owner.call("POST", "/createRoom", body))["room_id"]
        gate = asyncio.Semaphore(CONCURRENCY)

        async def put(room_id: str, n: int) -> None:
            async with gate:
                path = f"/rooms/{_room(room_id)}/state/{FILLER_STATE}/k{n}"
                await owner.call("PUT", path, {"n": n})

        rooms = (self.big_room, self.big_join_room)
        await asyncio.gather(*(put(room, n) for room in rooms for n in range(state_events)))

    async def close(self) -> None:
        for user in self.users:
            await user.session.close()


# -- the measurements: each returns operations per second, and may note side figures ---------

Notes = dict[str, list[float]]


async def _sends_one_at_a_time(server: Server, room_id: str, count: int) -> float:
    owner = server.users[0]
    start = time.perf_counter()
    for n in range(count):
        await send(owner, room_id, f"сообщение {n}")
    return count / (time.perf_counter() - start)


async def sends_sequential(server: Server, count: int, notes: Notes) -> float:
    return await _sends_one_at_a_time(server, server.send_room, count)


async def sends_big_room(server: Server, count: int, notes: Notes) -> float:
    return await _sends_one_at_a_time(server, server.big_room, count)


async def sends_concurrent(server: Server, count: int, notes: Notes) -> float:
    owner = server.users[0]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        async with gate:
            await send(owner, server.send_room, f"параллельно {n}")

    start = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    return count / (time.perf_counter() - start)


async def joins(server: Server, count: int, notes: Notes) -> float:
    return await _join_cycles(server, server.join_room, count, notes, "")


async def joins_big_room(server: Server, count: int, notes: Notes) -> float:
    return await _join_cycles(server, server.big_join_room, count, notes, ", big room")


async def _join_cycles(server: Server, room_id: str, count: int, notes: Notes, tag: str) -> float:
    owner, other = server.users
    room = _room(room_id)
    timed: dict[str, list[float]] = {"invite": [], "join": [], "leave": []}
    for _ in range(count):
        for step, client, path, body in (
            ("invite", owner, f"/rooms/{room}/invite", {"user_id": other.user_id}),
            ("join", other, f"/rooms/{room}/join", {}),
            ("leave", other, f"/rooms/{room}/leave", {}),
        ):
            start = time.perf_counter()
            await client.call("POST", path, body)
            timed[step].append(time.perf_counter() - start)
    for step, times in timed.items():
        notes.setdefault(f"{step}{tag} ms", []).append(statistics.median(times) * 1000)
    return count / sum(timed["join"])


Measure = Callable[[Server, int, Notes], Awaitable[float]]


async def run_rounds(
    servers: tuple[Server, Server], rounds: int, messages: int, cycles: int, state: int
) -> dict[str, dict[str, list[float]]]:
    """rates[metric][server] per round; each metric on both servers back to back."""
    metrics: list[tuple[str, Measure, int]] = [
        ("sends/s, sequential", sends_sequential, messages),
        (f"sends/s, {CONCURRENCY} in flight", sends_concurrent, messages),
        (f"sends/s, +{state} state", sends_big_room, max(1, messages // 2)),
        ("joins/s", joins, cycles),
        (f"joins/s, +{state} state", joins_big_room, cycles),
    ]
    rates: dict[str, dict[str, list[float]]] = {
        m: {s.name: [] for s in servers} for m, _, _ in metrics
    }
    notes: dict[str, Notes] = {s.name: {} for s in servers}
    for server in servers:  # warm-up: caches, connections, the rooms' first events
        await sends_sequential(server, 20, {})
        await sends_big_room(server, 5, {})
        await joins(server, 3, {})
        await joins_big_room(server, 3, {})
    for round_ in range(rounds):
        order = servers if round_ % 2 == 0 else servers[::-1]
        for metric, measure, count in metrics:
            for server in order:
                rates[metric][server.name].append(await measure(server, count, notes[server.name]))
        print(
            f"round {round_ + 1}: "
            + "; ".join(
                f"{metric} " + " / ".join(f"{rates[metric][s.name][-1]:.1f}" for s in servers)
                for metric, _, _ in metrics
            ),
            flush=True,
        )
    for server in servers:
        side = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in notes[server.name].items())
        print(f"{server.name}: median latency {side}")
    return rates


# -- the deployments ------------------------------------------------------------------------


def loaded_modules(deployment: Deployment) -> list[str]:
    log = deployment.dir / "logs" / "homeserver.log"
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []
    return [line.split(LOADED_MODULE, 1)[1].strip() for line in lines if LOADED_MODULE in line]


def logcontext_warnings(deployment: Deployment) -> int:
    log = deployment.dir / "logs" / "homeserver.log"
    if not log.exists():
        return 0
    with log.open(encoding="utf-8", errors="replace") as lines:
        return sum(1 for line in lines if LOGCONTEXT_WARNING in line and " - WARNING - " in line)


def init(deployment: Deployment) -> None:
    deployment.init()
    (deployment.dir / "conf.d" / "55-bench.yaml").write_text(yaml.safe_dump(BENCH_OVERRIDES))


def setup_with_module(deployment: Deployment) -> list[tuple[str, str]]:
    init(deployment)
    deployment.start()
    sferumctl("roster", "import", str(deployment.dir), str(demo_roster_folder()))
    accounts = deployment.issue(*TEACHERS)
    report = deployment.reconcile()
    if report.get("failures"):
        raise RuntimeError(f"reconcile failed: {report}")
    return [(accounts[t]["user_id"], accounts[t]["password"]) for t in TEACHERS]


def setup_without_module(deployment: Deployment) -> list[tuple[str, str]]:
    init(deployment)
    deployment.start_without_module()
    return [
        (deployment.register_unlinked(f"bench{n}", f"bench-pass-{n}"), f"bench-pass-{n}")
        for n in (1, 2)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=80, help="messages per send run")
    parser.add_argument("--joins", type=int, default=20, help="join cycles per run")
    parser.add_argument("--state", type=int, default=200, help="extra state in the big room")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="sferum-overhead-"))
    started = time.perf_counter()
    with_module = Server("with", Deployment(root / "with", "with.test"))
    without = Server("without", Deployment(root / "without", "without.test"))
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            a = pool.submit(setup_with_module, with_module.deployment)
            b = pool.submit(setup_without_module, without.deployment)
            with_module.credentials, without.credentials = a.result(), b.result()
        modules = {s.name: loaded_modules(s.deployment) for s in (with_module, without)}
        print(f"set up in {time.perf_counter() - started:.0f} s; loaded modules: {modules}")
        if modules["without"] or not modules["with"]:
            sys.exit("the deployments do not differ by the module alone; not measuring")
        rates = asyncio.run(measure(with_module, without, args))
        warnings = {s.name: logcontext_warnings(s.deployment) for s in (with_module, without)}
        print(f"log-context warnings in the servers' logs: {warnings}")
    finally:
        for server in (with_module, without):
            server.deployment.stop()
        shutil.rmtree(root, ignore_errors=True)

    ratios: dict[str, float] = {}
    for metric, by_server in rates.items():
        ours, theirs = by_server["with"], by_server["without"]
        paired = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
        ratios[metric] = paired
        print(
            f"{metric:22} with {statistics.median(ours):7.1f}, without "
            f"{statistics.median(theirs):7.1f} (median of rounds; ratio "
            f"{statistics.median(ours) / statistics.median(theirs):.3f}), "
            f"median per-round ratio {paired:.3f}"
        )
    seq, conc, big, join, big_join = ratios.values()
    ok = min(seq, conc, big) >= SENDS_TARGET and min(join, big_join) >= JOINS_TARGET
    print(
        f"total {time.perf_counter() - started:.0f} s; sends ratio = {seq:.2f} sequential, "
        f"{conc:.2f} with {CONCURRENCY} in flight, {big:.2f} with +{args.state} state "
        f"(target ≥ {SENDS_TARGET}), joins ratio = {join:.2f}, {big_join:.2f} with "
        f"+{args.state} state (target ≥ {JOINS_TARGET}): {'OK' if ok else 'NOT MET'}"
    )


async def measure(
    with_module: Server, without: Server, args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    try:
        for server in (with_module, without):
            await server.connect()
        await asyncio.gather(*(s.fill_big_rooms(args.state) for s in (with_module, without)))
        return await run_rounds(
            (with_module, without), args.rounds, args.messages, args.joins, args.state
        )
    finally:
        for server in (with_module, without):
            await server.close()


if __name__ == "__main__":
    main()
