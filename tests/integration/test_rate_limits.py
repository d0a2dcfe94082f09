"""A school is one network address: the rendered rate limits against a real Synapse.

Everything here comes from 127.0.0.1, as a classroom or a parents' meeting behind the school's
NAT does. The deployment runs with the limits `sferumctl init` wrote (the other integration
tests lift them), so these are the numbers a school gets: a class signs in at once, a meeting
registers together, a teacher posts a round of homework; wrong passwords and floods still meet
a 429. The people have no classes, so there is nothing to provision: rooms are not the point.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from synapse_sferum.ctl.demo import DemoCalendar
from tests.demo import today
from tests.integration.clients import NewUser, Reply, User, login
from tests.integration.harness import TEST_OVERRIDES, Deployment, sferumctl

pytestmark = pytest.mark.integration

SERVER = "limits.test"
PUPILS = [f"p-{n:02}" for n in range(1, 36)]  # a class of 35
GUARDIANS = [f"g-{n:02}" for n in range(1, 41)]  # their parents: 35, and 5 second parents
TEACHER = "t-1"
# Only what the limits under test do not cover stays lifted: room creation (the teacher's ten
# groups) and Synapse's start-up background updates.
OVERRIDES = {key: TEST_OVERRIDES[key] for key in ("rc_room_creation", "background_updates")}
USER_COLUMNS = (
    "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,"
    "givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password"
)


def write_school(folder: Path) -> Path:
    """One school: 35 pupils (12 years old), 40 guardians and a teacher; no classes."""
    folder.mkdir()
    kinds = ("academicSessions", "categories", "classes", "classResources", "courses",
             "courseResources", "demographics", "enrollments", "lineItems", "orgs", "resources",
             "results", "users")  # fmt: skip
    present = {"demographics", "orgs", "users"}
    manifest = ["propertyName,value", "manifest.version,1.0", "oneroster.version,1.1"]
    manifest += [f"file.{k},{'bulk' if k in present else 'absent'}" for k in kinds]
    (folder / "manifest.csv").write_text("\n".join(manifest) + "\n", encoding="utf-8")
    (folder / "orgs.csv").write_text(
        "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n"
        "school-1,,,Школа №7,school,77-0007,\n",
        encoding="utf-8",
    )
    users = [USER_COLUMNS, f"{TEACHER},,,true,school-1,teacher,uchitel.t,,Татьяна,Учитель,,,,,,,,"]
    for n, pupil in enumerate(PUPILS, 1):
        parents = [GUARDIANS[n - 1]] + ([GUARDIANS[34 + n]] if n <= 5 else [])
        users.append(
            f'{pupil},,,true,school-1,student,uchenik{n},,Ученик,Номер{n},,,,,,"{",".join(parents)}",07,'
        )
    for n, guardian in enumerate(GUARDIANS, 1):
        child = PUPILS[(n - 1) % 35]
        users.append(
            f"{guardian},,,true,school-1,parent,roditel{n},,Родитель,Номер{n},,,,,,{child},,"
        )
    (folder / "users.csv").write_text("\n".join(users) + "\n", encoding="utf-8")
    born = DemoCalendar(today()).born(12, 4, 1)
    demographics = ["sourcedId,status,dateLastModified,birthDate"]
    demographics += [f"{pupil},,,{born}" for pupil in PUPILS]
    (folder / "demographics.csv").write_text("\n".join(demographics) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def school(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Deployment, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("limits")
    deployment = Deployment(tmp / SERVER, SERVER, overrides=OVERRIDES)
    deployment.init()
    deployment.start()
    try:
        sferumctl("roster", "import", str(deployment.dir), str(write_school(tmp / "roster")))
        issued = deployment.issue(TEACHER, *PUPILS)
        yield deployment, {person: account["password"] for person, account in issued.items()}
    finally:
        deployment.stop()


async def try_login(base_url: str, user: str, password: str) -> Reply:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base_url}/_matrix/client/v3/login", json=body) as response,
    ):
        return Reply(response.status, await response.json(content_type=None) or {})


def user_id(localpart: str) -> str:
    return f"@{localpart}:{SERVER}"


async def test_a_whole_class_signs_in_at_once(school: tuple[Deployment, dict[str, str]]) -> None:
    deployment, passwords = school
    replies = await asyncio.gather(
        *(
            try_login(deployment.base_url, user_id(f"uchenik{n}"), passwords[pupil])
            for n, pupil in enumerate(PUPILS, 1)
        )
    )
    assert [reply.status for reply in replies] == [200] * 35, [
        reply.body for reply in replies if reply.status != 200
    ]


async def test_wrong_passwords_are_limited_per_account(
    school: tuple[Deployment, dict[str, str]],
) -> None:
    deployment, passwords = school
    victim = user_id("uchenik35")
    statuses = [
        (await try_login(deployment.base_url, victim, f"guess-{n}")).status for n in range(10)
    ]
    assert statuses[:5] == [403] * 5, statuses  # a child mistyping has five tries
    assert 429 in statuses, statuses  # then guessing is slowed down to one a minute
    refused = await try_login(deployment.base_url, victim, passwords["p-35"])
    assert refused.status == 429 and refused.body["errcode"] == "M_LIMIT_EXCEEDED", refused
    # The limit is the account's: a classmate at the same address signs in meanwhile.
    classmate = await try_login(deployment.base_url, user_id("uchenik34"), passwords["p-34"])
    assert classmate.status == 200, classmate


async def token_is_valid(base_url: str, code: str) -> Reply:
    query = urllib.parse.urlencode({"token": code})
    url = f"{base_url}/_matrix/client/v1/register/m.login.registration_token/validity?{query}"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return Reply(response.status, await response.json(content_type=None) or {})


async def test_a_parents_meeting_registers_together(
    school: tuple[Deployment, dict[str, str]],
) -> None:
    deployment, _ = school
    out = sferumctl("link-codes", str(deployment.dir), "--person", *GUARDIANS, "--format", "json")
    codes = {c["person"]: c["code"] for c in json.loads(out.stdout)["codes"]}
    assert sorted(codes) == GUARDIANS
    checks = await asyncio.gather(
        *(token_is_valid(deployment.base_url, c) for c in codes.values())
    )
    assert all(c.status == 200 and c.body["valid"] is True for c in checks), checks
    outbox = deployment.dir / "sms-outbox.jsonl"
    gate = asyncio.Semaphore(8)  # eight phones at a time, as people at a meeting do it

    async def register(n: int, guardian: str) -> Reply:
        async with gate:
            return await NewUser(deployment.base_url, outbox).complete(
                codes[guardian], f"+7 916 700-{n // 100:02}-{n % 100:02}"
            )

    done = await asyncio.gather(*(register(n, g) for n, g in enumerate(GUARDIANS, 1)))
    assert sorted(d.body["user_id"] for d in done) == sorted(
        user_id(f"roditel{n}") for n in range(1, 41)
    )


async def test_a_teacher_posts_homework_to_ten_rooms_and_a_flood_is_stopped(
    school: tuple[Deployment, dict[str, str]],
) -> None:
    deployment, passwords = school
    teacher: User = await login(deployment.base_url, user_id("uchitel.t"), passwords[TEACHER])
    # Ten groups made at once (each creation also counts against the message limit) ...
    created = await asyncio.gather(
        *(teacher.create_room(name=f"Группа {n}", preset="private_chat") for n in range(10))
    )
    assert all(c.status == 200 for c in created), created
    # ... and the homework posted to each of them in a row.
    for reply in created:
        sent = await teacher.send_text(reply.body["room_id"], "Домашнее задание: §12, упр. 3–5")
        assert sent.status == 200, sent
    # A flood (a runaway script on the same account) still meets the limit.
    room = created[0].body["room_id"]
    statuses = [(await teacher.send_text(room, f"{n}")).status for n in range(30)]
    assert 429 in statuses, statuses
