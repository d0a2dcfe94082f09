#!/usr/bin/env python3
"""Measures registrations/s through the full flow against plain shared-secret registration.

One real Synapse deployment is made with the integration harness (`sferumctl init`, SQLite, the
test rate limits of TEST_OVERRIDES, which lift rc_registration, rc_3pid_validation and
rc_login), started, and given the demo roster plus --count + 1 extra guardians, each with a
child in the demo classes, a username of their own and a distinct phone; the rooms are
reconciled once, and one `sferumctl link-codes --person ...` issues a linking code to every
extra guardian (codes are printed by the school beforehand: not timed).

Then, on the same server in the same run, raw client-server calls (aiohttp, one keep-alive
session) time, one registration after the other (no concurrency):

* full: what a newcomer's client does (issue 3): POST /register (401 and a session), the
  `m.login.registration_token` stage with the linking code, POST
  /register/msisdn/requestToken for the guardian's own phone, the 6-digit code read back from
  the deployment's sms-outbox.jsonl (the `file` SMS gateway), POST submit_url, and the final
  /register with `m.login.msisdn`. Every step's status is checked, and the final reply must be
  200 with the user ID named after the roster person; at the end sferum_links must hold every
  registered guardian linked to that account with that phone;
* plain: Synapse's own `/_synapse/admin/v1/register` with `registration_shared_secret` (GET a
  nonce, POST the HMAC), for distinct new localparts; each reply must be 200 with a user ID.

The full flow sends the password with every /register, as the tests' NewUser does, so Synapse
hashes it twice (bcrypt at the first, and again at the final request, which prefers a password
it is given to the hash kept in the session); the plain registration hashes it once. One of each
runs first as a warm-up. The registrations are split into --rounds batches; each round runs a
batch of each, in alternating order, so that the noise of a shared machine falls on both alike.
Printed: count, seconds and registrations/s of each, the ratio full/plain of the totals, and
the median per-round ratio; before them, the median time of each call of either flow (warm-up
included).

    .venv/bin/python bench/registration.py [--count 40] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import attrs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
)  # for the sferumctl subprocesses the harness runs

from tests.integration.harness import Deployment, copy_roster, sferumctl  # noqa: E402

SERVER_NAME = "reg-bench.test"
PASSWORD = "correct horse battery staple"
GUARDIAN_PREFIX = "bench-g-"
CHILDREN = ("p-5a-1", "p-5a-2", "p-5a-3", "p-6b-1")  # demo pupils the extra guardians look after
SMS_CODE = re.compile(r"\b(\d{6})\b")


@attrs.frozen
class Guardian:
    """An extra roster person without an account, and the linking code issued to them."""

    person: str
    username: str
    phone: str  # E.164, the guardian's own number in the roster
    code: str = ""


def guardians(count: int) -> list[Guardian]:
    return [
        Guardian(f"{GUARDIAN_PREFIX}{n:04d}", f"bench.parent.{n:04d}", f"+7999{n:07d}")
        for n in range(1, count + 1)
    ]


def write_roster(dest: Path, extra: list[Guardian]) -> Path:
    """The demo roster with `extra` guardians appended, each the agent of a demo pupil."""
    roster = copy_roster(dest)
    with (roster / "users.csv").open("a", encoding="utf-8") as users:
        for n, g in enumerate(extra):
            child = CHILDREN[n % len(CHILDREN)]
            users.write(
                f"{g.person},,,true,school-1,parent,{g.username},,Ольга,Бенчева,Ивановна,"
                f",,,{g.phone},{child},,\n"
            )
    return roster


def issue_codes(deployment: Deployment, people: list[Guardian]) -> list[Guardian]:
    out = sferumctl(
        "link-codes",
        str(deployment.dir),
        "--person",
        *(g.person for g in people),
        "--format",
        "json",
    )
    issued = json.loads(out.stdout)
    codes = {c["person"]: c["code"] for c in issued["codes"]}
    if issued["skipped"] or set(codes) != {g.person for g in people}:
        raise RuntimeError(f"link-codes did not issue one code per guardian: {issued}")
    return [attrs.evolve(g, code=codes[g.person]) for g in people]


class Outbox:
    """The `file` SMS gateway's outbox, read on from where the last look stopped."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.latest: dict[str, str] = {}  # number → the code of the last SMS to it

    def code_for(self, to: str) -> str:
        with self.path.open("rb") as stream:
            stream.seek(self.offset)
            new = stream.read()
        complete = new[: new.rfind(b"\n") + 1]  # a line still being written waits its turn
        self.offset += len(complete)
        for line in complete.decode("utf-8").splitlines():
            sms = json.loads(line)
            found = SMS_CODE.search(sms["text"])
            if found:
                self.latest[sms["to"]] = found.group(1)
        if to not in self.latest:
            raise RuntimeError(f"no SMS to {to} in {self.path}")
        return self.latest.pop(to)


@attrs.define
class Bench:
    deployment: Deployment
    http: aiohttp.ClientSession
    outbox: Outbox
    shared_secret: bytes
    registered: dict[str, str] = attrs.field(factory=dict)  # person → user ID (full flow)
    plain_users: int = 0
    steps: dict[str, list[float]] = attrs.field(factory=dict)  # step → seconds of each call

    async def post(self, step: str, path: str, body: Any, expect: int = 200) -> dict[str, Any]:
        url = path if path.startswith("http") else f"{self.deployment.base_url}{path}"
        start = time.perf_counter()
        async with self.http.post(url, json=body) as response:
            reply: dict[str, Any] = await response.json(content_type=None) or {}
            self.steps.setdefault(step, []).append(time.perf_counter() - start)
            if response.status != expect:
                raise RuntimeError(f"POST {path}: {response.status} (not {expect}) {reply}")
            return reply

    async def full(self, guardian: Guardian) -> None:
        """One registration as a newcomer's client makes it; raises unless it succeeded."""
        register = "/_matrix/client/v3/register"
        body: dict[str, Any] = {"username": "anything", "password": PASSWORD}
        session = (await self.post("full: register", register, body, expect=401))["session"]
        auth = {"type": "m.login.registration_token", "token": guardian.code, "session": session}
        reply = await self.post("full: code", register, body | {"auth": auth}, expect=401)
        if "m.login.registration_token" not in reply.get("completed", []):
            raise RuntimeError(f"linking code of {guardian.person} not accepted: {reply}")
        client_secret = secrets.token_urlsafe(16)
        asked = await self.post(
            "full: requestToken",
            "/_matrix/client/v3/register/msisdn/requestToken",
            {
                "client_secret": client_secret,
                "country": "RU",
                "phone_number": guardian.phone,
                "send_attempt": 1,
            },
        )
        sid, submit_url = asked["sid"], asked["submit_url"]
        token = self.outbox.code_for("+" + asked["msisdn"])
        submitted = await self.post(
            "full: submit SMS code",
            submit_url,
            {"sid": sid, "client_secret": client_secret, "token": token},
        )
        if submitted.get("success") is not True:
            raise RuntimeError(f"SMS code of {guardian.person} not accepted: {submitted}")
        creds = {"sid": sid, "client_secret": client_secret}
        auth = {"type": "m.login.msisdn", "threepid_creds": creds, "session": session}
        done = await self.post("full: finish", register, body | {"auth": auth})
        expected = f"@{guardian.username}:{SERVER_NAME}"
        if done.get("user_id") != expected or not done.get("access_token"):
            raise RuntimeError(f"{guardian.person} registered as {done}, not {expected}")
        self.registered[guardian.person] = expected

    async def plain(self, localpart: str) -> None:
        """One shared-secret registration through Synapse's admin API."""
        url = f"{self.deployment.base_url}/_synapse/admin/v1/register"
        start = time.perf_counter()
        async with self.http.get(url) as response:
            nonce = (await response.json())["nonce"]
        self.steps.setdefault("plain: nonce", []).append(time.perf_counter() - start)
        mac = hmac.new(self.shared_secret, digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join([nonce.encode(), localpart.encode(), PASSWORD.encode(), b"notadmin"])
        )
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": PASSWORD,
            "admin": False,
            "mac": mac.hexdigest(),
        }
        reply = await self.post("plain: register", url, body)
        if reply.get("user_id") != f"@{localpart}:{SERVER_NAME}" or not reply.get("access_token"):
            raise RuntimeError(f"plain registration of {localpart}: {reply}")
        self.plain_users += 1


async def timed(calls: Sequence[Callable[[], Awaitable[None]]]) -> float:
    """Seconds to run the calls one after the other."""
    start = time.perf_counter()
    for call in calls:
        await call()
    return time.perf_counter() - start


def check_links(
    deployment: Deployment, registered: dict[str, str], people: list[Guardian]
) -> None:
    """Every full registration left its account linked to its person with the verified phone."""
    phones = {g.person: g.phone.removeprefix("+") for g in people}
    with sqlite3.connect(deployment.dir / "homeserver.db") as db:
        rows = db.execute(
            "SELECT person_id, user_id, msisdn FROM sferum_links WHERE person_id LIKE ?",
            (f"{GUARDIAN_PREFIX}%",),
        ).fetchall()
    links = {person: (user_id, msisdn) for person, user_id, msisdn in rows}
    wrong = {
        person: links.get(person)
        for person, user_id in registered.items()
        if links.get(person) != (user_id, phones[person])
    }
    if wrong or len(links) != len(registered):
        raise RuntimeError(f"{len(links)} links for {len(registered)} registrations: {wrong}")


async def measure(
    deployment: Deployment, people: list[Guardian], rounds: int
) -> tuple[list[float], list[float], Bench]:
    """Seconds per round for the full flow and the plain registrations, and the bench."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as http:
        bench = Bench(
            deployment,
            http,
            Outbox(deployment.dir / "sms-outbox.jsonl"),
            str(deployment.secrets["registration_shared_secret"]).encode(),
        )
        warm_up, *timed_people = people
        await bench.full(warm_up)
        await bench.plain("plain-warmup")
        full_seconds: list[float] = []
        plain_seconds: list[float] = []
        for round_ in range(rounds):
            batch = timed_people[round_::rounds]
            full = [functools.partial(bench.full, g) for g in batch]
            plain = [
                functools.partial(bench.plain, f"plain-{round_}-{n}") for n in range(len(batch))
            ]
            if round_ % 2 == 0:
                full_s, plain_s = await timed(full), await timed(plain)
            else:
                plain_s, full_s = await timed(plain), await timed(full)
            full_seconds.append(full_s)
            plain_seconds.append(plain_s)
            print(
                f"round {round_ + 1}: {len(batch)} each; full {len(batch) / full_s:.1f}/s, "
                f"plain {len(batch) / plain_s:.1f}/s, ratio {plain_s / full_s:.3f}",
                flush=True,
            )
        return full_seconds, plain_seconds, bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="registrations of each kind")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    if args.count < args.rounds or args.rounds < 1:
        parser.error("--count must be at least --rounds, and --rounds at least 1")

    root = Path(tempfile.mkdtemp(prefix="sferum-registration-"))
    started = time.perf_counter()
    deployment = Deployment(root / "deployment", SERVER_NAME)
    people = guardians(args.count + 1)  # one more for the warm-up
    try:
        roster = write_roster(root / "roster", people)
        deployment.init()
        deployment.start()
        sferumctl("roster", "import", str(deployment.dir), str(roster))
        report = deployment.reconcile()
        if report.get("failures"):
            raise RuntimeError(f"reconcile failed: {report}")
        people = issue_codes(deployment, people)
        print(
            f"set up in {time.perf_counter() - started:.0f} s: {len(people)} guardians "
            f"with linking codes; registering one after the other, {args.rounds} rounds",
            flush=True,
        )
        full_seconds, plain_seconds, bench = asyncio.run(measure(deployment, people, args.rounds))
        check_links(deployment, bench.registered, people)
        print(
            f"checked: {len(bench.registered)} full registrations (warm-up included) linked "
            f"to their roster person with their phone; {bench.plain_users} plain accounts"
        )
        print(
            "median ms per call: "
            + ", ".join(f"{k} {statistics.median(v) * 1000:.0f}" for k, v in bench.steps.items())
        )
    finally:
        deployment.stop()
        shutil.rmtree(root, ignore_errors=True)

    count = args.count
    full_total, plain_total = sum(full_seconds), sum(plain_seconds)
    full_rate, plain_rate = count / full_total, count / plain_total
    paired = statistics.median(p / f for f, p in zip(full_seconds, plain_seconds, strict=True))
    print(f"full flow   {count:5} registrations in {full_total:6.2f} s: {full_rate:7.2f}/s")
    print(f"plain       {count:5} registrations in {plain_total:6.2f} s: {plain_rate:7.2f}/s")
    print(
        f"total {time.perf_counter() - started:.0f} s; ratio full/plain = "
        f"{full_rate / plain_rate:.3f} (median per-round ratio {paired:.3f})"
    )


if __name__ == "__main__":
    main()
