"""Quiet hours end to end (docs/identity.md): a real Synapse, its HTTP pusher, and a push gateway
here.

Synapse's pusher refuses private addresses unless `ip_range_whitelist` lets it reach the
gateway on 127.0.0.1; a conf.d file of the test deployment does that.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import attrs
import pytest
import yaml
from aiohttp import web

from tests.integration.clients import User, login
from tests.integration.conftest import DemoRoster, make_deployment
from tests.integration.harness import Deployment, demo_roster_folder, free_port, sferumctl

pytestmark = pytest.mark.integration

SERVER = "quiet.test"
MSK = ZoneInfo("Europe/Moscow")
QUIET_TYPE = "ru.sferum.quiet_hours"
AUTO_REPLY = "ru.sferum.auto_reply"
RULE = "/pushrules/global/override/ru.sferum.quiet_hours"
DAYS_EN = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAYS_RU = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")


class ServerClock:
    """What time the deployment's Synapse reads, and a way to move it forward.

    Quiet hours begin and end on whole minutes, so a check that pushes resume on time waited
    up to a minute for the next one. Synapse runs under libfaketime (Debian's `faketime`)
    with an offset in a file it reads every second: the test moves the server's clock to a few
    seconds before a minute instead. Without libfaketime, or in a run already under it
    (`scripts/test --at`), the clock is the real one and the test waits for the real minute.
    """

    def __init__(self, folder: Path) -> None:
        # Debian's multi-threaded build (Synapse has threads), in the machine's multiarch folder
        found = sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))
        movable = bool(found) and "FAKETIME" not in os.environ
        self.library = str(found[0]) if movable else ""
        self.offset_file = folder / "faketime.rc" if movable else None
        self.offset = 0  # whole seconds ahead of the real clock

    def environment(self) -> dict[str, str]:
        """For the server's process: the library, reading its offset from the file."""
        if self.offset_file is None:
            return {}
        self.offset_file.write_text("+0\n")
        return {
            "LD_PRELOAD": self.library,
            "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
            "FAKETIME_CACHE_DURATION": "1",
            # Not FAKETIME_DONT_FAKE_MONOTONIC: with it libfaketime 0.9.10 fails every sleep
            # (EINVAL). So the monotonic clock jumps with the wall clock: a pause, to Synapse.
        }

    def now(self) -> datetime:
        return datetime.now(MSK) + timedelta(seconds=self.offset)

    async def next_minute(self, base_url: str, lead: float = 6) -> datetime:
        """The server's next whole minute, at least 3 s away; moved to about `lead` seconds
        away when the clock can be moved (once the server's own Date header shows it)."""
        now = self.now()
        minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        if self.offset_file is None:
            return minute if (minute - now).total_seconds() >= 3 else minute + timedelta(minutes=1)
        self.offset += max(0, int((minute - now).total_seconds() - lead))
        self.offset_file.write_text(f"+{self.offset}\n")
        wanted = datetime.now(MSK) + timedelta(seconds=self.offset - 1)
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.get(f"{base_url}/_matrix/client/versions") as reply:
                    if parsedate_to_datetime(reply.headers["Date"]) >= wanted:
                        return minute
                await asyncio.sleep(0.2)


@attrs.frozen
class School:
    deployment: Deployment
    accounts: dict[str, dict[str, Any]]
    teacher: str
    guardian: str
    colleague: str
    clock: ServerClock

    async def login(self, person: str) -> User:
        account = self.accounts[person]
        return await login(self.deployment.base_url, account["user_id"], account["password"])


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory, demo_roster: DemoRoster) -> Iterator[School]:
    deployment = make_deployment(tmp_path_factory.mktemp("quiet"), "sqlite", None, SERVER)
    deployment.init()
    (deployment.dir / "conf.d" / "60-push-gateway.yaml").write_text(
        yaml.safe_dump({"ip_range_whitelist": ["127.0.0.1/32"]})
    )
    clock = ServerClock(deployment.dir)
    with pytest.MonkeyPatch.context() as patch:  # `sferumctl start` passes it on to Synapse
        for name, value in clock.environment().items():
            patch.setenv(name, value)
        deployment.start()
    try:
        sferumctl("roster", "import", str(deployment.dir), str(demo_roster_folder()))
        pupil = sorted(demo_roster.students["5a"])[0]
        teacher, colleague = sorted(demo_roster.teachers["5a"])[:2]
        guardian = sorted(demo_roster.guardians_of(pupil))[0]
        accounts = deployment.issue(teacher, colleague, guardian)
        yield School(deployment, accounts, teacher, guardian, colleague, clock)
    finally:
        deployment.stop()


class PushGateway:
    """Records what Synapse's HTTP pusher sends to /_matrix/push/v1/notify."""

    def __init__(self) -> None:
        self.port = free_port()
        self.notifications: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/_matrix/push/v1/notify"

    async def _notify(self, request: web.Request) -> web.Response:
        self.notifications.append((await request.json())["notification"])
        return web.json_response({"rejected": []})

    def event_ids(self) -> set[str]:
        return {str(n.get("event_id")) for n in self.notifications}

    async def wait_for(self, event_id: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while event_id not in self.event_ids():
            assert time.monotonic() < deadline, (event_id, self.notifications)
            await asyncio.sleep(0.1)


@asynccontextmanager
async def push_gateway() -> AsyncIterator[PushGateway]:
    gateway = PushGateway()
    app = web.Application()
    app.router.add_post("/_matrix/push/v1/notify", gateway._notify)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", gateway.port).start()
    try:
        yield gateway
    finally:
        await runner.cleanup()


async def until(check: Any, what: str, timeout: float = 20) -> Any:
    """Polls an async check until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def timeline(user: User, room_id: str) -> list[dict[str, Any]]:
    reply = await user.call("GET", f"/rooms/{urllib.parse.quote(room_id)}/messages?dir=b&limit=50")
    assert reply.status == 200, reply
    return list(reversed(reply.body["chunk"]))


async def rule_in_place(user: User) -> bool:
    reply = await user.call("GET", RULE)
    assert reply.status in (200, 404), reply
    if reply.status == 200:
        assert reply.body["actions"] == [] and reply.body["conditions"] == [], reply
    return reply.status == 200


async def put_hours(user: User, content: dict[str, Any]) -> None:
    path = f"/user/{urllib.parse.quote(user.user_id)}/account_data/{QUIET_TYPE}"
    reply = await user.call("PUT", path, content)
    assert reply.status == 200, reply


def far_from_now() -> tuple[datetime, dict[str, Any]]:
    """Working hours only three days ahead: now is quiet, and stays so during the test."""
    back = datetime.now(MSK).replace(hour=10, minute=0, second=0, microsecond=0)
    back += timedelta(days=3)
    return back, {"days": {DAYS_EN[back.weekday()]: [["10:00", "11:00"]]}}


async def test_no_push_while_quiet_one_notice_and_pushes_resume_on_time(school: School) -> None:
    teacher = await school.login(school.teacher)
    guardian = await school.login(school.guardian)
    async with push_gateway() as gateway:
        pusher = await teacher.call(
            "POST",
            "/pushers/set",
            {
                "kind": "http",
                "app_id": "ru.sferum.tests",
                "pushkey": "quiet-hours",
                "app_display_name": "tests",
                "device_display_name": "tests",
                "lang": "ru",
                "data": {"url": gateway.url},
            },
        )
        assert pusher.status == 200, pusher
        created = await guardian.create_room(is_direct=True, invite=[teacher.user_id])
        assert created.status == 200, created
        dm = created.body["room_id"]
        joined = await teacher.call("POST", f"/rooms/{urllib.parse.quote(dm)}/join", {})
        assert joined.status == 200, joined

        # Before any quiet hours, the pusher works: the control.
        before = await guardian.send_text(dm, "Здравствуйте!")
        await gateway.wait_for(before.body["event_id"])

        back, hours = far_from_now()
        await put_hours(teacher, hours)
        await until(lambda: rule_in_place(teacher), "the quiet push rule")
        quiet_ids = []
        for text in ("Добрый вечер", "Вопрос про домашнее задание", "Ответьте, пожалуйста"):
            sent = await guardian.send_text(dm, text)
            assert sent.status == 200, sent
            quiet_ids.append(sent.body["event_id"])

        # The messages arrive all the same.
        async def teacher_has_all() -> bool:
            seen = {e["event_id"] for e in await timeline(teacher, dm)}
            return set(quiet_ids) <= seen

        await until(teacher_has_all, "the teacher to receive the messages")

        # One automatic notice, in the teacher's name, however many messages came.
        async def notices() -> list[dict[str, Any]]:
            return [e for e in await timeline(guardian, dm) if e["content"].get(AUTO_REPLY)]

        [notice] = await until(notices, "the automatic notice")
        await asyncio.sleep(2)
        assert len(await notices()) == 1
        assert notice["sender"] == teacher.user_id
        assert notice["content"]["msgtype"] == "m.notice"
        assert notice["content"]["body"] == (
            f"Учитель сейчас не на связи. Ответит с 10:00 {DAYS_RU[back.weekday()]}."
        )

        # Hours that begin at the server's next minute: the loop must give pushes back on time.
        start = await school.clock.next_minute(school.deployment.base_url)
        end = start + timedelta(hours=1)
        await put_hours(
            teacher,
            {
                "days": {
                    DAYS_EN[start.weekday()]: [[start.strftime("%H:%M"), end.strftime("%H:%M")]]
                }
            },
        )
        assert await rule_in_place(teacher)

        async def rule_gone() -> bool:
            return not await rule_in_place(teacher)

        wait = (start - school.clock.now()).total_seconds()
        await until(rule_gone, "pushes to resume", timeout=wait + 10)
        resumed = school.clock.now()
        assert start <= resumed < start + timedelta(seconds=8), (start, resumed)

        after = await guardian.send_text(dm, "Доброе утро!")
        await gateway.wait_for(after.body["event_id"])
        # The pusher sends in order, so the quiet messages would have come before this one.
        assert not set(quiet_ids) & gateway.event_ids(), gateway.notifications
        assert len(await notices()) == 1


async def chat_with_bot(user: User, server: str) -> Callable[[str], Awaitable[str]]:
    """The user's one-to-one chat with the platform bot; returns how to ask it something."""
    bot_id = f"@sferum:{server}"
    created = await user.create_room(invite=[bot_id], preset="private_chat")
    assert created.status == 200, created
    room = created.body["room_id"]

    async def bot_joined() -> bool:
        return bot_id in await user.members(room)

    await until(bot_joined, "the bot to join")

    async def ask(text: str) -> str:
        sent = await user.send_text(room, text)
        assert sent.status == 200, sent

        async def reply() -> str | None:
            events = await timeline(user, room)
            position = next(
                i for i, e in enumerate(events) if e["event_id"] == sent.body["event_id"]
            )
            for e in events[position + 1 :]:
                if e["sender"] == bot_id and e["content"].get("msgtype") == "m.notice":
                    return str(e["content"]["body"])
            return None

        answer: str = await until(reply, f"the bot's answer to {text!r}")
        return answer

    return ask


async def test_chat_command_to_the_bot(school: School) -> None:
    teacher = await school.login(school.colleague)
    ask = await chat_with_bot(teacher, SERVER)

    back, _ = far_from_now()
    day = DAYS_RU[back.weekday()]
    answer = await ask(f"!часы {day} 10:00-11:00")
    assert answer.startswith(f"Сохранено. Рабочие часы: {day} 10:00–11:00 (Europe/Moscow)."), (
        answer
    )
    assert "Сейчас нерабочее время" in answer
    stored = await teacher.call(
        "GET", f"/user/{urllib.parse.quote(teacher.user_id)}/account_data/{QUIET_TYPE}"
    )
    assert stored.body == {
        "enabled": True,
        "timezone": "Europe/Moscow",
        "days": {DAYS_EN[back.weekday()]: [["10:00", "11:00"]]},
    }
    await until(lambda: rule_in_place(teacher), "the quiet push rule")

    answer = await ask("!hours off")
    assert "Тихие часы выключены" in answer

    async def rule_gone() -> bool:
        return not await rule_in_place(teacher)

    await until(rule_gone, "the push rule to go")

    answer = await ask("!часы пн-пт 25:00-17:00")
    assert answer.startswith("Не получилось: «25:00-17:00»: «25:00» — это не время ЧЧ:ММ"), answer
