"""Issue 5 point 8 against a real Synapse: a pupil banned from the lesson room is cut off within
5 seconds, a classmate who stays is not; `/metrics` counts the participants going down. The same
for a pupil on LiveKit's native client (the SFU's LiveKit signalling, issue 12).

Teachers cannot kick in provisioned rooms (membership is the platform's), so the ban is done as
the platform's bot with the appservice token, as the module itself would.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from livekit import rtc as livekit

from sferum_shared import SYSTEM_CLOCK
from sfu import tokens
from sfu.membership import CLOSE_REMOVED
from sfu.server import SfuServer
from tests.integration.clients import User
from tests.integration.conftest import DemoRoster, make_deployment
from tests.integration.harness import demo_roster_folder, sferumctl
from tests.integration.test_sfu_auth import SERVER, School, openid_token, sfu_config_for

pytestmark = pytest.mark.integration

JWT_SECRET = "leave-integration-jwt-secret-of-enough-length"
SLOT = "m.call#ROOM"


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory, demo_roster: DemoRoster) -> Iterator[School]:
    # A deployment of its own: the test bans a pupil, which must not leak into other modules.
    deployment = make_deployment(tmp_path_factory.mktemp("sfu-leave"), "sqlite", None, SERVER)
    deployment.init()
    deployment.start()
    try:
        sferumctl("roster", "import", str(deployment.dir), str(demo_roster_folder()))
        # The 5А pupils, whom the tests ban and keep: a reconcile of the whole demo school
        # takes twice as long.
        accounts = deployment.issue(*sorted(demo_roster.students["5a"]))
        report = deployment.reconcile()
        assert report["failures"] == 0, (report, deployment.log_tail())
        yield School(deployment, demo_roster, accounts, unlinked="")
    finally:
        deployment.stop()


@pytest.fixture
async def sfu(school: School) -> AsyncIterator[TestServer]:
    config = sfu_config_for(school.deployment, SERVER, JWT_SECRET)
    server = TestServer(SfuServer(config, SYSTEM_CLOCK).app())
    await server.start_server()
    yield server
    await server.close()


async def get_token(
    session: aiohttp.ClientSession, sfu: TestServer, user: User, room_id: str
) -> str:
    """The SFU's JWT for `user` in the call of `room_id`, asked as Element Call asks it."""
    body = {
        "room_id": room_id,
        "slot_id": SLOT,
        "openid_token": await openid_token(user),
        "member": {"id": "member-1", "claimed_user_id": user.user_id, "claimed_device_id": "DEV"},
    }
    async with session.post(sfu.make_url("/get_token"), json=body) as response:
        answer = await response.json()
        assert response.status == 200, answer
    return str(answer["jwt"])


async def join_call(
    session: aiohttp.ClientSession, sfu: TestServer, user: User, room_id: str
) -> aiohttp.ClientWebSocketResponse:
    """`/get_token`, then `join` on `/ws` with the JWT."""
    jwt = await get_token(session, sfu, user, room_id)
    ws = await session.ws_connect(sfu.make_url("/ws"))
    room = tokens.room_name(room_id, SLOT)
    await ws.send_str(json.dumps({"type": "join", "room": room, "token": jwt}))
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "joined", msg
    return ws


async def participants_metric(session: aiohttp.ClientSession, sfu: TestServer) -> float:
    async with session.get(sfu.make_url("/metrics")) as response:
        assert response.status == 200
        text = await response.text()
    for line in text.splitlines():
        if line.startswith("sfu_participants "):
            return float(line.split()[1])
    raise AssertionError(text)


async def until_closed(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[Any], aiohttp.WSMessage]:
    """Every text message up to the close frame, and the close frame."""
    texts = []
    while True:
        msg = await ws.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            texts.append(json.loads(msg.data))
        else:
            return texts, msg


async def ban(school: School, room_id: str, user: User) -> None:
    """A ban by the platform's bot, with the appservice token, as the module itself would."""
    bot = User(
        school.deployment.base_url, f"@sferum:{SERVER}", school.deployment.secrets["as_token"]
    )
    path = f"/rooms/{urllib.parse.quote(room_id)}/ban"
    reply = await bot.call("POST", path, {"user_id": user.user_id, "reason": "left the class"})
    assert reply.status == 200, reply


@pytest.mark.timeout(120)
async def test_banned_pupil_is_cut_off_within_five_seconds(
    school: School, sfu: TestServer
) -> None:
    gone_id, stays_id = sorted(school.roster.students["5a"])[:2]
    gone, stays = await school.login(gone_id), await school.login(stays_id)
    lesson = await gone.resolve(f"#lesson-5a:{SERVER}")
    async with aiohttp.ClientSession() as session:
        gone_ws = await join_call(session, sfu, gone, lesson)
        stays_ws = await join_call(session, sfu, stays, lesson)
        assert await participants_metric(session, sfu) == 2

        await ban(school, lesson, gone)
        banned_at = time.monotonic()

        async with asyncio.timeout(5):
            texts, close = await until_closed(gone_ws)
        assert time.monotonic() - banned_at < 5
        assert close.type == aiohttp.WSMsgType.CLOSE, close
        assert close.data == CLOSE_REMOVED
        assert close.extra == "ru.sferum.sfu_banned"
        assert {"type": "removed", "reason": "ru.sferum.sfu_banned"}.items() <= texts[-1].items()

        # The classmate hears the new list and is still there after further checks.
        while True:
            msg = await stays_ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            data = json.loads(msg.data)
            if data["type"] == "participants" and len(data["participants"]) == 1:
                break
        await asyncio.sleep(4.5)  # two more membership checks
        assert not stays_ws.closed
        await stays_ws.send_str(json.dumps({"type": "mute", "kind": "audio", "muted": True}))
        msg = await stays_ws.receive(timeout=5)
        assert (
            msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "participants"
        )
        assert await participants_metric(session, sfu) == 1
        await stays_ws.close()


@pytest.mark.timeout(120)
async def test_banned_pupil_on_a_livekit_client_is_removed_within_five_seconds(
    school: School, sfu: TestServer
) -> None:
    """The same through LiveKit's native client (what Element X runs): told it was removed."""
    gone_id, stays_id = sorted(school.roster.students["5a"])[2:4]
    gone, stays = await school.login(gone_id), await school.login(stays_id)
    lesson = await gone.resolve(f"#lesson-5a:{SERVER}")
    url = f"ws://{sfu.host}:{sfu.port}"
    async with aiohttp.ClientSession() as session:
        gone_jwt = await get_token(session, sfu, gone, lesson)
        stays_jwt = await get_token(session, sfu, stays, lesson)
    gone_room, stays_room = livekit.Room(), livekit.Room()
    reasons: list[int] = []
    gone_room.on("disconnected", reasons.append)
    left: list[str] = []
    stays_room.on("participant_disconnected", lambda p: left.append(p.identity))
    await gone_room.connect(url, gone_jwt)
    await stays_room.connect(url, stays_jwt)
    try:
        assert [p.identity for p in stays_room.remote_participants.values()] == [
            gone_room.local_participant.identity
        ]
        await ban(school, lesson, gone)
        banned_at = time.monotonic()
        async with asyncio.timeout(5):
            while not (reasons and left):
                await asyncio.sleep(0.05)
        assert time.monotonic() - banned_at < 5
        assert reasons == [livekit.DisconnectReason.PARTICIPANT_REMOVED]
        assert left == [gone_room.local_participant.identity]
        await asyncio.sleep(4.5)  # two more membership checks
        assert stays_room.connection_state == livekit.ConnectionState.CONN_CONNECTED
    finally:
        await gone_room.disconnect()
        await stays_room.disconnect()
