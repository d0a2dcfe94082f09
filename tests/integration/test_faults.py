"""Faults under load on one worker deployment (issue 16): nothing lost, back without a person.

One deployment as `sferumctl init --workers 1` lays it out (main, a generic worker for clients,
the event persister and the other single workers, Redis, nginx), with the diary bridge and the
SFU, on the throwaway PostgreSQL, run by `sferumctl start`'s supervisor. Each test puts one
fault on it while members send numbered messages through nginx, as a client does: each message
until it is answered, again with the same transaction ID after a retryable failure
(`sferum_shared.http.retryable`). Then:

- the deployment is back by itself: the supervisor restarted what was killed, and
  `sferumctl status` says every service runs and is healthy;
- every answer was a success or a retryable failure, never a refusal a client would not retry;
- every message answered 200 is in the room, once, as another member reads it (/messages);
- each member's next message after the recovery is answered 200;
- the diary bridge is at work again, not only up: a sync through it fails nothing.
"""

from __future__ import annotations

import asyncio
import collections
import csv
import os
import shutil
import signal
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

from sferum_shared.http import Request, Response, Unreachable, json_request, retryable
from sferum_shared.web import send
from synapse_sferum.ctl.supervision import read_states
from synapse_sferum.ctl.workers import internal_ports
from tests.integration.clients import Reply, User
from tests.integration.harness import (
    Deployment,
    PostgresCluster,
    demo_diary_folder,
    free_port,
    free_ports,
    sferumctl,
)
from tests.integration.test_diary_bridge import (
    bulk_marks,
    bulk_results,
    diary_sync,
    posted_count,
    room_events,
    write_csv,
)

pytestmark = pytest.mark.integration

SERVER = "faults.test"
PUPILS = ["p-5a-1", "p-5a-2", "p-5a-3", "p-5a-4"]  # all of 5А: their diaries get the marks
READER, SENDERS = PUPILS[0], PUPILS[1:]
CLASS_CHAT = f"#class-5a:{SERVER}"
BRIDGE, SFU, REDIS = "diary-bridge", "sfu", "redis"
PERSISTER, CLIENT_WORKER = "synapse-event-persister", "synapse-client-1"

SEND_TIMEOUT = 10.0  # a client's wait for one answer; no answer by then is a timeout
PAUSE = 0.1  # between one member's messages: a chat's pace, not a benchmark's
RETRY_DELAY = 0.2
GIVE_UP = 45.0  # one message's retries; the recoveries here take seconds
RECOVERY_TIMEOUT = 60.0
# The bridge's batch: big enough that the kill lands in its middle, small enough to be quick.
FAULT_RESULTS = 80
STOP_AFTER = 12


# -- the deployment -------------------------------------------------------------------------


@attrs.frozen
class Faulty:
    deployment: Deployment  # base_url: nginx, the one port clients use
    postgres: PostgresCluster
    diary: Path  # the bridge's CSV source (the tests change it)
    accounts: dict[str, dict[str, Any]]  # person -> {"user_id", "password"}

    async def login(self, person: str) -> User:
        """The person signed in through nginx, as a client signs in: patiently."""
        account = self.accounts[person]
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": account["user_id"]},
            "password": account["password"],
        }
        base = self.deployment.base_url
        answer = await patiently(json_request("POST", f"{base}/_matrix/client/v3/login", body, {}))
        assert answer.status == 200, (person, answer)
        signed_in = answer.json_object()
        return PatientUser(base, signed_in["user_id"], signed_in["access_token"])

    def restarts(self) -> dict[str, int]:
        """How often the supervisor restarted each service (its state file; what status shows)."""
        states = read_states(self.deployment.dir / "run" / "supervisor-state.json")
        return {name: state.restarts for name, state in states.items()}


def only_5a(folder: Path) -> None:
    """Cuts the demo roster down to class 5А: its teachers and pupils, their parents and the
    administrators. Each class adds rooms, and every event costs a trip through the persister."""

    def keep(name: str, wanted: Callable[[dict[str, str]], bool]) -> list[dict[str, str]]:
        with (folder / name).open(encoding="utf-8-sig") as f:
            rows = [row for row in csv.DictReader(f) if wanted(row)]
        write_csv(folder / name, rows)
        return rows

    classes = keep("classes.csv", lambda row: row["sourcedId"] == "5a")
    keep("courses.csv", lambda row: row["sourcedId"] == classes[0]["courseSourcedId"])
    enrolled = {
        r["userSourcedId"] for r in keep("enrollments.csv", lambda r: r["classSourcedId"] == "5a")
    }

    def stays(row: dict[str, str]) -> bool:
        agents = set(row["agentSourcedIds"].split(","))
        return (
            row["sourcedId"] in enrolled
            or row["role"] == "administrator"
            or bool(agents & enrolled)
        )

    users = keep("users.csv", stays)
    kept = {row["sourcedId"] for row in users}
    for row in users:
        agents = row["agentSourcedIds"].split(",")
        row["agentSourcedIds"] = ",".join(a for a in agents if a in kept)
    write_csv(folder / "users.csv", users)
    keep("demographics.csv", lambda row: row["sourcedId"] in kept)


async def answers(
    http: aiohttp.ClientSession, request: Request
) -> AsyncIterator[Response | Unreachable]:
    """Each answer to `request` as a client gets them: it sends the request again while the
    answer is one a client retries, for up to GIVE_UP seconds."""
    give_up = time.monotonic() + GIVE_UP
    while True:
        try:
            answer: Response | Unreachable = await send(http, request)
        except Unreachable as e:
            answer = e
        yield answer
        if not retryable(answer) or time.monotonic() > give_up:
            return
        await asyncio.sleep(RETRY_DELAY)


async def patiently(request: Request) -> Response:
    """The last of the `answers`. Right after PostgreSQL's restart, each connection a Synapse
    process kept from before fails one request with a 500, whoever sends it."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT)) as http:
        heard = [answer async for answer in answers(http, request)]
    if isinstance(heard[-1], Unreachable):
        raise heard[-1]
    return heard[-1]


@attrs.define
class PatientUser(User):
    """A member whose every request is sent `patiently`: the reader and the checks after a
    fault see what a client would, not the first request that meets a dead connection."""

    async def _request(self, method: str, path: str, body: Any) -> Reply:
        url, headers = f"{self.base_url}{path}", {"Authorization": f"Bearer {self.token}"}
        request = (
            Request(method, url, headers)
            if body is None
            else json_request(method, url, body, headers)
        )
        answer = await patiently(request)
        return Reply(answer.status, answer.json_object())


@pytest.fixture(scope="module")
def faulty(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresCluster
) -> Iterator[Faulty]:
    root = tmp_path_factory.mktemp("faults")
    diary = root / "diary"
    shutil.copytree(demo_diary_folder(), diary)
    (diary / "timetable.ics").unlink()  # lessons would only add posts
    only_5a(diary)
    bulk_results(diary, PUPILS, len(PUPILS))  # one mark each; the bridge's test adds more
    database = postgres.create_database(f"hs_{SERVER.replace('.', '_')}")
    deployment = Deployment(
        root / SERVER,
        SERVER,
        database,
        extra_init=(
            *("--workers", "1", "--internal-port", str(free_ports(internal_ports(1)))),
            *("--diary-source", f"oneroster-csv:{diary}", "--diary-port", str(free_port())),
            *("--sfu-port", str(free_port())),
        ),
    )
    try:
        deployment.init()
        deployment.start()
        sferumctl("roster", "import", str(deployment.dir), str(diary))
        accounts = deployment.issue(*PUPILS)
        report = deployment.reconcile()
        assert report["failures"] == 0, (report, deployment.log_tail())
        sferumctl("diary", "sync", str(deployment.dir))  # the marks of the first mark each
        yield Faulty(deployment, postgres, diary, accounts)
    finally:
        deployment.stop()


# -- the load -------------------------------------------------------------------------------


@attrs.frozen
class Attempt:
    number: int
    phase: str  # when it was sent: "before" the fault, during the "fault", "after" recovery
    answer: Response | Unreachable

    @property
    def ok(self) -> bool:
        return isinstance(self.answer, Response) and self.answer.status == 200

    def __str__(self) -> str:
        if isinstance(self.answer, Unreachable):
            return f"#{self.number} ({self.phase}): no answer: {self.answer}"
        body = self.answer.body[:200].decode(errors="replace")
        return f"#{self.number} ({self.phase}): {self.answer.status} {body}"


@attrs.define
class Sender:
    """A member sending numbered messages to a room, one after another."""

    user: User
    room: str
    label: str  # starts each message's body: which fault, which member
    attempts: list[Attempt] = attrs.Factory(list)

    def delivered(self, phase: str | None = None) -> list[int]:
        return [a.number for a in self.attempts if a.ok and phase in (None, a.phase)]


class Load:
    """Senders at work until the block ends; `phase` labels the attempts made meanwhile."""

    def __init__(self, senders: list[Sender]):
        self.senders = senders
        self.phase = "before"
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Load:
        self._tasks = [asyncio.create_task(self._run(sender)) for sender in self.senders]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)  # each ends its message first: answered or given up

    async def _run(self, sender: Sender) -> None:
        timeout = aiohttp.ClientTimeout(total=SEND_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            number = 0
            while not self._stop.is_set():
                number += 1
                await self._deliver(http, sender, number)
                await asyncio.sleep(PAUSE)

    async def _deliver(self, http: aiohttp.ClientSession, sender: Sender, number: int) -> None:
        """Sends the message until it is answered 200 or refused for good, with one
        transaction ID: the server answers a repeat of one it has with the same event."""
        room = urllib.parse.quote(sender.room)
        txn = urllib.parse.quote(f"{sender.label}-{number}".replace(" ", "-"))
        request = json_request(
            "PUT",
            f"{sender.user.base_url}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}",
            {"msgtype": "m.text", "body": f"{sender.label} {number}"},
            {"Authorization": f"Bearer {sender.user.token}"},
        )
        phase = self.phase
        async for answer in answers(http, request):
            sender.attempts.append(Attempt(number, phase, answer))
            phase = self.phase  # of the next attempt, sent after a short wait

    async def until(self, done: Callable[[Sender], bool], what: str) -> None:
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while not all(done(sender) for sender in self.senders):
            stuck = [s.attempts[-3:] for s in self.senders if not done(s)]
            assert time.monotonic() < deadline, f"{what}: {[list(map(str, a)) for a in stuck]}"
            await asyncio.sleep(0.1)


# -- a fault --------------------------------------------------------------------------------


def kill(faulty: Faulty, service: str) -> Callable[[], Awaitable[None]]:
    async def inject() -> None:
        os.kill(faulty.deployment.pid(service), signal.SIGKILL)

    return inject


def wait_back(faulty: Faulty, killed: str | None, restarts_before: dict[str, int]) -> str:
    """Waits until the supervisor has restarted `killed` (if a service was killed) and
    `sferumctl status` says every service runs and is healthy; returns what status said."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    status = None
    while time.monotonic() < deadline:
        restarts = faulty.restarts()
        if killed is None or restarts.get(killed, 0) > restarts_before.get(killed, 0):
            status = sferumctl("status", str(faulty.deployment.dir), check=False)
            if status.returncode == 0:
                return status.stdout
        time.sleep(0.2)
    said = "(the supervisor did not restart it)" if status is None else status.stdout
    raise AssertionError(f"not back after {RECOVERY_TIMEOUT:g} s:\n{said}")


async def read_back(faulty: Faulty, labels: list[str]) -> collections.Counter[str]:
    """How often each message of these senders is in the class chat, read by another member."""
    reader = await faulty.login(READER)
    events = await room_events(reader, CLASS_CHAT)
    return collections.Counter(
        body
        for event in events
        if event["type"] == "m.room.message"
        and isinstance(body := event["content"].get("body"), str)
        and body.rsplit(" ", 1)[0] in labels
    )


def summary(fault: str, senders: list[Sender]) -> str:
    """`redis: 212 messages, 9 answers other than 200: no answer ×2, 502 ×7`."""
    failed = collections.Counter(
        "no answer" if isinstance(a.answer, Unreachable) else str(a.answer.status)
        for s in senders
        for a in s.attempts
        if not a.ok
    )
    kinds = ", ".join(f"{kind} ×{count}" for kind, count in sorted(failed.items()))
    sent = sum(len(s.delivered()) for s in senders)
    return f"{fault}: {sent} messages, {failed.total()} answers other than 200: {kinds or '-'}"


async def under_load(
    faulty: Faulty, fault: str, inject: Callable[[], Awaitable[None]], killed: str | None
) -> None:
    """The fault while the senders send; then every check of the module's docstring."""
    room = await (await faulty.login(READER)).resolve(CLASS_CHAT)
    senders = [Sender(await faulty.login(person), room, f"{fault} {person}") for person in SENDERS]
    async with Load(senders) as load:
        await load.until(lambda s: len(s.delivered()) >= 2, "no load before the fault")
        restarts_before = faulty.restarts()
        load.phase = "fault"
        await inject()
        status = await asyncio.to_thread(wait_back, faulty, killed, restarts_before)
        load.phase = "after"
        await load.until(lambda s: bool(s.delivered("after")), "no send succeeded after recovery")

    print(summary(fault, senders))  # in the test's captured output: what the fault did
    refused = [str(a) for s in senders for a in s.attempts if not a.ok and not retryable(a.answer)]
    assert not refused, f"{fault}: answers a client would not retry: {refused}\n{status}"
    given_up = [s.attempts[-1] for s in senders if not s.attempts[-1].ok]
    assert not given_up, f"{fault}: still failing after {GIVE_UP:g} s: {given_up}"
    shown = await read_back(faulty, [s.label for s in senders])
    for sender in senders:
        lost = [n for n in sender.delivered() if shown[f"{sender.label} {n}"] == 0]
        assert not lost, f"{fault}: {sender.label}: answered 200 but not in the room: {lost}"
    twice = sorted(body for body, count in shown.items() if count > 1)
    assert not twice, f"{fault}: in the room more than once: {twice}"


def bridge_works(faulty: Faulty, fault: str) -> None:
    """The bridge is back at its work, not only answering /health: a sync reads its source and
    its ledger and reaches Synapse. (After a PostgreSQL restart it once answered /health while
    every sync failed on its dead connection.)"""
    report = diary_sync(faulty.deployment)
    assert report["failed"] == 0, (fault, report)


# -- the tests ------------------------------------------------------------------------------


async def test_postgresql_restarted(faulty: Faulty) -> None:
    """PostgreSQL stopped (`-m fast`: sessions cut off) and started again on its port."""
    await under_load(
        faulty, "postgresql", lambda: asyncio.to_thread(faulty.postgres.restart), None
    )
    bridge_works(faulty, "postgresql")


@pytest.mark.parametrize("service", [REDIS, PERSISTER, CLIENT_WORKER, SFU])
async def test_killed_service(faulty: Faulty, service: str) -> None:
    """kill -9 of one process; the supervisor restarts it."""
    await under_load(faulty, service, kill(faulty, service), service)
    bridge_works(faulty, service)


async def test_diary_bridge_killed_in_a_batch_posts_each_mark_once(faulty: Faulty) -> None:
    """kill -9 of the bridge in the middle of a batch of marks: after its restart it posts the
    rest, and no mark twice (its ledger, checked against the diaries themselves)."""
    deployment = faulty.deployment

    async def inject() -> None:
        bulk_results(faulty.diary, PUPILS, FAULT_RESULTS)  # the bridge notices by itself
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while posted_count(deployment) < STOP_AFTER:
            assert time.monotonic() < deadline, deployment.log_tail()
            await asyncio.sleep(0.05)
        await kill(faulty, BRIDGE)()
        assert posted_count(deployment) < FAULT_RESULTS, "the batch ended before the kill"

    await under_load(faulty, BRIDGE, inject, BRIDGE)
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while posted_count(deployment) < FAULT_RESULTS:  # the restarted bridge syncs at its start
        assert time.monotonic() < deadline, deployment.log_tail()
        await asyncio.sleep(0.2)
    marks = [
        mark for pupil in PUPILS for mark in await bulk_marks(await faulty.login(pupil), pupil)
    ]
    twice = sorted(mark for mark, count in collections.Counter(marks).items() if count > 1)
    assert not twice, f"posted more than once: {twice}"
    assert len(marks) == FAULT_RESULTS
    bridge_works(faulty, BRIDGE)
