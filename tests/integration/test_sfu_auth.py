"""The SFU's auth routes against a real Synapse with the module: real OpenID tokens, the real
directory and rooms (`rtc-facts`), lk-jwt-service's request shapes. The deployment is made with
`sferumctl init --sfu-port`, so the module also puts the SFU's call page into rooms as a widget."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from livekit import rtc as livekit

from sferum_shared import SYSTEM_CLOCK
from sferum_shared.matrix import WIDGETS
from sferum_shared.rooms import RoomKind
from sferum_shared.vocabulary import WidgetId
from sfu import tokens
from sfu.authservice import AuthService
from sfu.config import SfuConfig, parse_config
from sfu.grants import Grant
from sfu.server import SfuServer
from synapse_sferum.ctl.deploy import BOT_LOCALPART
from synapse_sferum.policy.call_widget import widget_state
from tests.integration.clients import User, login
from tests.integration.conftest import DemoRoster, make_deployment
from tests.integration.harness import Deployment, demo_roster_folder, free_port, sferumctl
from tests.integration.test_sfu_page import Browser, needs_chromium, wait_stats, widget_host

pytestmark = pytest.mark.integration

SERVER = "school.test"
JWT_SECRET = "integration-jwt-secret-of-enough-length"
UNLINKED_PASSWORD = "unlinked-password-1"
ALL = ["camera", "microphone", "screen_share"]


@attrs.frozen
class School:
    deployment: Deployment
    roster: DemoRoster
    accounts: dict[str, dict[str, Any]]
    unlinked: str

    async def login(self, person: str) -> User:
        if person == "unlinked":
            return await login(self.deployment.base_url, self.unlinked, UNLINKED_PASSWORD)
        account = self.accounts[person]
        return await login(self.deployment.base_url, account["user_id"], account["password"])


def signing_in(roster: DemoRoster) -> set[str]:
    """Everyone the tests below sign in as."""
    pupils_5a = sorted(roster.students["5a"])
    return {
        "t-1",
        "staff-1",
        first(roster.teachers["5a"]),
        *pupils_5a[:2],
        "p-5a-2",
        first(roster.students["6b"]),
        *(
            first(roster.guardians_of(pupil))
            for pupil in (pupils_5a[0], "p-5a-1", "p-5a-3", "p-5a-4", "p-6b-1")
        ),
    }


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory, demo_roster: DemoRoster) -> Iterator[School]:
    deployment = make_deployment(tmp_path_factory.mktemp("sfu"), "sqlite", None, SERVER)
    deployment.extra_init = ("--sfu-port", str(free_port()))  # `start` runs the SFU too
    deployment.init()
    deployment.start()
    try:
        sferumctl("roster", "import", str(deployment.dir), str(demo_roster_folder()))
        # Accounts for the people who sign in below only: a reconcile of the whole demo
        # school would triple the set-up.
        accounts = deployment.issue(*signing_in(demo_roster))
        report = deployment.reconcile()
        assert report["failures"] == 0, (report, deployment.log_tail())
        unlinked = deployment.register_unlinked("stranger", UNLINKED_PASSWORD)
        yield School(deployment, demo_roster, accounts, unlinked)
    finally:
        deployment.stop()


def sfu_config_for(deployment: Deployment, server_name: str, jwt_secret: str) -> SfuConfig:
    """The SFU's config for a test deployment: its homeserver and the module's admin API."""
    base = deployment.base_url
    return parse_config(
        {
            "server_name": server_name,
            "homeserver_url": base,
            "admin_api_url": f"{base}/_synapse/client/sferum/admin/v1",
            "admin_api_secret": deployment.secrets["admin_api_secret"],
            "jwt_secret": jwt_secret,
            "sfu_url": "wss://sfu.school.test",
        }
    )


@pytest.fixture
async def auth(school: School) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    config = sfu_config_for(school.deployment, SERVER, JWT_SECRET)
    async with TestClient(TestServer(AuthService(config, SYSTEM_CLOCK).app())) as client:
        yield client


async def openid_token(user: User) -> dict[str, Any]:
    path = f"/user/{urllib.parse.quote(user.user_id)}/openid/request_token"
    reply = await user.call("POST", path, {})
    assert reply.status == 200, reply
    assert set(reply.body) == {"access_token", "token_type", "matrix_server_name", "expires_in"}
    return reply.body


async def get_token(
    auth: TestClient[Any, Any], user: User, room_id: str, openid: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    body = {
        "room_id": room_id,
        "slot_id": "m.call#ROOM",
        "openid_token": openid or await openid_token(user),
        "member": {"id": "member-1", "claimed_user_id": user.user_id, "claimed_device_id": "DEV"},
    }
    response = await auth.post("/get_token", json=body)
    return response.status, await response.json()


def grant_in(answer: dict[str, Any], room_id: str) -> Grant:
    assert answer["url"] == "wss://sfu.school.test"
    room = tokens.room_name(room_id, "m.call#ROOM")
    return tokens.grant_of(tokens.verify(answer["jwt"], JWT_SECRET, room, int(time.time())))


def first(people: set[str]) -> str:
    return sorted(people)[0]


async def rooms(user: User) -> tuple[str, str, str]:
    return (
        await user.resolve(f"#lesson-5a:{SERVER}"),
        await user.resolve(f"#lesson-6b:{SERVER}"),
        await user.resolve(f"#broadcast-school-1:{SERVER}"),
    )


async def test_teacher_publishes_everything_in_their_lesson(
    school: School, auth: TestClient[Any, Any]
) -> None:
    teacher = await school.login(first(school.roster.teachers["5a"]))
    lesson_5a, _, _ = await rooms(teacher)
    status, answer = await get_token(auth, teacher, lesson_5a)
    assert status == 200, answer
    grant = grant_in(answer, lesson_5a)
    assert grant.can_publish and grant.can_subscribe
    assert list(grant.can_publish_sources) == ALL


async def test_pupil_receives_and_publishes_microphone_only(
    school: School, auth: TestClient[Any, Any]
) -> None:
    pupil = await school.login(first(school.roster.students["5a"]))
    lesson_5a, _, _ = await rooms(pupil)
    status, answer = await get_token(auth, pupil, lesson_5a)
    assert status == 200, answer
    grant = grant_in(answer, lesson_5a)
    assert grant.can_subscribe and grant.can_publish
    assert grant.can_publish_sources == ("microphone",)


async def test_pupil_of_another_class_is_refused(
    school: School, auth: TestClient[Any, Any]
) -> None:
    pupil = await school.login(first(school.roster.students["6b"]))
    teacher = await school.login(first(school.roster.teachers["5a"]))
    lesson_5a, _, _ = await rooms(teacher)
    status, answer = await get_token(auth, pupil, lesson_5a)
    assert status == 403, answer
    assert answer["errcode"] == "M_FORBIDDEN"
    assert answer["ru.sferum.reason"] == "ru.sferum.sfu_not_joined"


async def test_unlinked_account_is_refused(school: School, auth: TestClient[Any, Any]) -> None:
    stranger = await school.login("unlinked")
    teacher = await school.login(first(school.roster.teachers["5a"]))
    lesson_5a, _, broadcast = await rooms(teacher)
    for room_id in (lesson_5a, broadcast):
        status, answer = await get_token(auth, stranger, room_id)
        assert status == 403, answer
        assert answer["ru.sferum.reason"] == "ru.sferum.sfu_not_in_directory"


async def test_parent_watches_broadcast_without_joining(
    school: School, auth: TestClient[Any, Any]
) -> None:
    parent_id = first(school.roster.guardians_of(first(school.roster.students["5a"])))
    parent = await school.login(parent_id)
    teacher = await school.login(first(school.roster.teachers["5a"]))
    _, _, broadcast = await rooms(teacher)
    assert broadcast not in await parent.joined_rooms()
    status, answer = await get_token(auth, parent, broadcast)
    assert status == 200, answer
    grant = grant_in(answer, broadcast)
    assert grant.can_subscribe and not grant.can_publish and grant.can_publish_sources == ()


async def test_pupil_in_a_broadcast_only_watches(
    school: School, auth: TestClient[Any, Any]
) -> None:
    # lk-jwt-service's request has no "publish" flag: the pupil is not refused, the token
    # simply grants no publishing.
    pupil = await school.login(first(school.roster.students["6b"]))
    teacher = await school.login(first(school.roster.teachers["5a"]))
    _, _, broadcast = await rooms(teacher)
    status, answer = await get_token(auth, pupil, broadcast)
    assert status == 200, answer
    grant = grant_in(answer, broadcast)
    assert not grant.can_publish and grant.can_subscribe


async def test_staff_publish_in_the_broadcast(school: School, auth: TestClient[Any, Any]) -> None:
    staff = await school.login("staff-1")
    _, _, broadcast = await rooms(staff)
    status, answer = await get_token(auth, staff, broadcast)
    assert status == 200, answer
    assert list(grant_in(answer, broadcast).can_publish_sources) == ALL


async def test_garbage_and_foreign_openid_tokens_are_refused(
    school: School, auth: TestClient[Any, Any]
) -> None:
    teacher = await school.login(first(school.roster.teachers["5a"]))
    lesson_5a, _, _ = await rooms(teacher)
    good = await openid_token(teacher)
    for openid, reason in (
        ({**good, "access_token": "garbage"}, "ru.sferum.sfu_openid_rejected"),
        ({**good, "matrix_server_name": "evil.test"}, "ru.sferum.sfu_other_server"),
    ):
        status, answer = await get_token(auth, teacher, lesson_5a, openid)
        assert status == 401, answer
        assert answer["errcode"] == "M_UNAUTHORIZED"
        assert answer["ru.sferum.reason"] == reason


async def test_claiming_another_user_is_refused(
    school: School, auth: TestClient[Any, Any]
) -> None:
    pupil = await school.login(first(school.roster.students["5a"]))
    teacher = await school.login(first(school.roster.teachers["5a"]))
    lesson_5a, _, _ = await rooms(teacher)
    # the pupil's own OpenID token, presented as the teacher
    status, answer = await get_token(auth, teacher, lesson_5a, await openid_token(pupil))
    assert status == 401, answer
    assert answer["ru.sferum.reason"] == "ru.sferum.sfu_claimed_user_mismatch"


async def test_legacy_sfu_get(school: School, auth: TestClient[Any, Any]) -> None:
    teacher = await school.login(first(school.roster.teachers["5a"]))
    lesson_5a, _, _ = await rooms(teacher)
    body = {"room": lesson_5a, "openid_token": await openid_token(teacher), "device_id": "DEV"}
    response = await auth.post("/sfu/get", json=body)
    answer = await response.json()
    assert response.status == 200, answer
    claims = tokens.verify(
        answer["jwt"], JWT_SECRET, tokens.room_name(lesson_5a), int(time.time())
    )
    assert claims["sub"] == f"{teacher.user_id}:DEV"
    assert claims["video"]["canPublishSources"] == ALL


async def test_issued_jwt_is_refused_expired_forged_or_elsewhere(
    school: School, auth: TestClient[Any, Any]
) -> None:
    teacher = await school.login(first(school.roster.teachers["5a"]))
    lesson_5a, lesson_6b, _ = await rooms(teacher)
    status, answer = await get_token(auth, teacher, lesson_5a)
    assert status == 200, answer
    jwt, now = answer["jwt"], int(time.time())
    room_5a = tokens.room_name(lesson_5a, "m.call#ROOM")
    tokens.verify(jwt, JWT_SECRET, room_5a, now)
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify(jwt, JWT_SECRET, room_5a, now + 3601)
    with pytest.raises(tokens.TokenError):
        tokens.verify(jwt, "another-secret-of-the-same-sufficient-len", room_5a, now)
    with pytest.raises(tokens.TokenError, match="another room"):
        tokens.verify(jwt, JWT_SECRET, tokens.room_name(lesson_6b, "m.call#ROOM"), now)


async def widget_event(user: User, room_id: str) -> dict[str, Any]:
    """The room's call widget event (with its ID), from the room's whole state."""
    reply = await user.call("GET", f"/rooms/{urllib.parse.quote(room_id)}/state")
    assert reply.status == 200, reply
    [event] = [e for e in reply.body if (e["type"], e["state_key"]) == (WIDGETS, WidgetId.CALL)]
    return event


async def test_the_call_page_is_a_widget_in_lessons_the_broadcast_and_class_news(
    school: School,
) -> None:
    hs = school.deployment
    sfu_url = hs.sfu_config().sfu_url
    teacher = await school.login(first(school.roster.teachers["5a"]))  # in all three rooms
    lesson_5a, _, broadcast = await rooms(teacher)
    news_5a = await teacher.resolve(f"#news-5a:{SERVER}")
    wanted = {
        lesson_5a: widget_state(RoomKind.LESSON, lesson_5a, sfu_url),
        broadcast: widget_state(RoomKind.BROADCAST, broadcast, sfu_url),
        news_5a: widget_state(RoomKind.CLASS_NEWS, broadcast, sfu_url),  # families watch there
    }
    events = {room_id: await widget_event(teacher, room_id) for room_id in wanted}
    assert {room_id: event["content"] for room_id, event in events.items()} == wanted
    assert all(event["sender"] == f"@{BOT_LOCALPART}:{SERVER}" for event in events.values())
    # The URL opens the page of the SFU that `sferumctl start` runs.
    page_url = wanted[news_5a]["url"].split("?", 1)[0]
    async with aiohttp.ClientSession() as http, http.get(page_url) as page:
        assert page.status == 200 and page.content_type == "text/html"

    # Members cannot replace or remove it (a page of theirs would get OpenID tokens).
    pupil = await school.login(first(school.roster.students["5a"]))
    for user in (teacher, pupil):
        reply = await user.put_state(lesson_5a, WIDGETS, {}, WidgetId.CALL)
        assert (reply.status, reply.reason) == (403, "ru.sferum.protected_state"), reply

    # Reconciling again sends nothing; a widget that differs is mended.
    report = hs.reconcile()
    assert (report["state_updates"], report["failures"]) == (0, 0), report
    for room_id, event in events.items():
        assert (await widget_event(teacher, room_id))["event_id"] == event["event_id"]
    bot = User(hs.base_url, f"@{BOT_LOCALPART}:{SERVER}", hs.secrets["as_token"])
    stale = {**wanted[news_5a], "url": "https://old-sfu.example/call"}
    reply = await bot.put_state(news_5a, WIDGETS, stale, WidgetId.CALL)
    assert reply.status == 200, reply
    report = hs.reconcile()
    assert (report["state_updates"], report["failures"]) == (1, 0), report
    assert (await widget_event(teacher, news_5a))["content"] == wanted[news_5a]


@needs_chromium
@pytest.mark.timeout(90)
async def test_the_call_widget_joins_with_the_users_openid_token(school: School) -> None:
    """The page as a widget of a client stand-in, against the SFU that `sferumctl start` runs.

    The host answers the page's `get_openid` with the teacher's real OpenID token; the page
    swaps it at the SFU's `/get_token` (checked with Synapse and the directory), joins the
    lesson's call and sends Chromium's fake camera.
    """
    teacher = await school.login("t-1")
    lesson = await teacher.resolve(f"#lesson-5a:{SERVER}")
    sfu_url = school.deployment.sfu_config().sfu_url
    host = web.Application()
    host.router.add_get(
        "/host", widget_host(sfu_url, lesson, teacher.user_id, await openid_token(teacher))
    )
    server = TestServer(host, host="127.0.0.1")
    await server.start_server()
    profile = school.deployment.dir.parent / "chromium-widget"
    browser = Browser(profile, str(server.make_url("/host")), fake_devices=True)
    try:
        async with aiohttp.ClientSession() as session:
            await browser.connect(session)
            await wait_stats(browser, lambda s: True, "", expression="document.body")
            context = await browser.frame_context(sfu_url)
            stats = await wait_stats(
                browser,
                lambda s: s.get("framesEncoded", 0) > 10,
                "the widget never sent the camera",
                context=context,
            )
            assert stats["state"] == "joined", stats
    finally:
        await browser.close()
        await server.close()


async def join_room(user: User, room_id: str) -> None:
    joined = await user.call("POST", f"/rooms/{urllib.parse.quote(room_id)}/join", {})
    assert joined.status == 200, joined


async def test_parents_meeting_the_class_teacher_leads_guardians_speak(
    school: School, auth: TestClient[Any, Any]
) -> None:
    teacher = await school.login(first(school.roster.teachers["5a"]))
    meeting = await teacher.resolve(f"#meeting-5a:{SERVER}")
    status, answer = await get_token(auth, teacher, meeting)
    assert status == 200, answer
    assert grant_in(answer, meeting) == Grant.publisher(*ALL, room_admin=True)
    guardian = await school.login(first(school.roster.guardians_of("p-5a-1")))
    status, answer = await get_token(auth, guardian, meeting)
    assert status == 200, answer
    assert grant_in(answer, meeting) == Grant.publisher("camera", "microphone")
    # A guardian of 6Б is no member of 5А's meeting; a pupil of 5А neither.
    for outsider in (first(school.roster.guardians_of("p-6b-1")), "p-5a-2"):
        status, answer = await get_token(auth, await school.login(outsider), meeting)
        assert status == 403, (outsider, answer)
        assert answer["ru.sferum.reason"] == "ru.sferum.sfu_not_joined"


async def test_a_parent_and_the_class_teacher_call_in_their_direct_chat(
    school: School, auth: TestClient[Any, Any]
) -> None:
    teacher_person = first(school.roster.teachers["5a"])
    teacher = await school.login(teacher_person)
    parent = await school.login(first(school.roster.guardians_of("p-5a-3")))
    created = await parent.create_room(is_direct=True, invite=[teacher.user_id])
    assert created.status == 200, created
    dm = created.body["room_id"]
    # Invited is not yet in the chat: no call until both are there.
    status, answer = await get_token(auth, parent, dm)
    assert status == 403 and answer["ru.sferum.reason"] == "ru.sferum.sfu_no_calls_in_room"
    await join_room(teacher, dm)
    for caller in (parent, teacher):
        status, answer = await get_token(auth, caller, dm)
        assert status == 200, answer
        assert grant_in(answer, dm) == Grant.publisher(*ALL)
    # A direct chat stays two (the contact rules refuse a third; were there one, it would be a
    # group, and groups hold no calls: tests/unit/test_sfu_auth_grants.py).
    other_parent = await school.login(first(school.roster.guardians_of("p-5a-4")))
    invited = await teacher.call(
        "POST", f"/rooms/{urllib.parse.quote(dm)}/invite", {"user_id": other_parent.user_id}
    )
    assert invited.status == 403 and invited.reason == "ru.sferum.dm_third_person", invited
    status, answer = await get_token(auth, other_parent, dm)
    assert status == 403 and answer["ru.sferum.reason"] == "ru.sferum.sfu_no_calls_in_room"


async def test_apps_find_the_sfu_as_element_call_does_and_join_it(school: School) -> None:
    """Discovery as Element Call 0.24+ does it (Synapse's MSC4143 transports), and as older
    clients do (the well-known), then `/sfu/get` at the focus and LiveKit's client at the `url`
    it answers: the deployment's own SFU, run by `sferumctl start`."""
    teacher = await school.login(first(school.roster.teachers["5a"]))
    reply = await teacher.call_path(
        "GET", "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports"
    )
    assert reply.status == 200, reply
    [transport] = reply.body["rtc_transports"]
    assert transport["type"] == "livekit"
    service = transport["livekit_service_url"]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{school.deployment.base_url}/.well-known/matrix/client") as r:
            well_known = await r.json(content_type=None)
        assert well_known["org.matrix.msc4143.rtc_foci"] == [transport]
        lesson_5a, _, _ = await rooms(teacher)
        body = {"room": lesson_5a, "openid_token": await openid_token(teacher), "device_id": "EX"}
        async with session.post(f"{service}/sfu/get", json=body) as r:
            answer = await r.json()
            assert r.status == 200, answer
    room = livekit.Room()
    await room.connect(answer["url"], answer["jwt"])
    try:
        assert room.local_participant.identity == f"{teacher.user_id}:EX"
        assert room.local_participant.permissions.can_publish
    finally:
        await room.disconnect()


async def announce(user: User, room_id: str, state_key: str) -> Any:
    """A call membership as Element Call sends it when joining a call."""
    path = (
        f"/rooms/{urllib.parse.quote(room_id)}/state/org.matrix.msc3401.call.member/"
        f"{urllib.parse.quote(state_key)}"
    )
    content = {
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": "EX",
        "focus_active": {"type": "livekit", "focus_selection": "oldest_membership"},
        "foci_preferred": [],
    }
    return await user.call("PUT", path, content)


async def test_members_announce_themselves_in_calls_and_nobody_else(school: School) -> None:
    """Element Call and Element X first send their call membership: a pupil in the lesson, a
    parent in the meeting; never for someone else, never where no calls are held."""
    pupil_person = first(school.roster.students["5a"])
    pupil = await school.login(pupil_person)
    classmate = await school.login(sorted(school.roster.students["5a"])[1])
    lesson = await pupil.resolve(f"#lesson-5a:{SERVER}")
    sent = await announce(pupil, lesson, f"_{pupil.user_id}_EX")
    assert sent.status == 200, sent
    forged = await announce(pupil, lesson, f"_{classmate.user_id}_EX")
    assert forged.status == 403 and forged.reason == "ru.sferum.call_membership_not_own", forged
    class_chat = await pupil.resolve(f"#class-5a:{SERVER}")
    elsewhere = await announce(pupil, class_chat, f"_{pupil.user_id}_EX")
    assert elsewhere.status == 403, elsewhere  # state there is the platform's
    parent = await school.login(first(school.roster.guardians_of(pupil_person)))
    meeting = await parent.resolve(f"#meeting-5a:{SERVER}")
    sent = await announce(parent, meeting, f"_{parent.user_id}_EX")
    assert sent.status == 200, sent


async def test_the_sfu_keeps_a_delegated_delayed_leave_and_sends_it_when_the_app_goes(
    school: School,
) -> None:
    """Element Call's "Matrix 2.0" mode: the app schedules its own "left the call" with a delay
    (MSC4140) and hands the delay to the focus at `/get_token`. While the app is connected the
    SFU keeps the delay from running out; when it goes, its leave is sent at once."""
    pupil = await school.login(first(school.roster.students["5a"]))
    lesson = await pupil.resolve(f"#lesson-5a:{SERVER}")
    key = f"_{pupil.user_id}_EX"
    assert (await announce(pupil, lesson, key)).status == 200
    state_path = (
        f"/rooms/{urllib.parse.quote(lesson)}/state/org.matrix.msc3401.call.member/"
        f"{urllib.parse.quote(key)}"
    )
    scheduled = await pupil.call("PUT", f"{state_path}?org.matrix.msc4140.delay=3000", {})
    assert scheduled.status == 200 and scheduled.body["delay_id"], scheduled
    config = sfu_config_for(school.deployment, SERVER, JWT_SECRET)
    sfu = TestServer(SfuServer(config, SYSTEM_CLOCK).app())
    await sfu.start_server()
    room = livekit.Room()
    try:
        body = {
            "room_id": lesson,
            "slot_id": "m.call#ROOM",
            "openid_token": await openid_token(pupil),
            "member": {"id": "m1", "claimed_user_id": pupil.user_id, "claimed_device_id": "EX"},
            "delay_id": scheduled.body["delay_id"],
            "delay_timeout": 3000,
            "delay_cs_api_url": school.deployment.base_url,
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(sfu.make_url("/get_token"), json=body) as response,
        ):
            answer = await response.json()
            assert response.status == 200, answer
        await room.connect(f"ws://{sfu.host}:{sfu.port}", answer["jwt"])
        await asyncio.sleep(7)  # more than twice the delay: the SFU restarted it meanwhile
        still = await pupil.call("GET", state_path)
        assert still.status == 200 and still.body.get("application") == "m.call", still
        await room.disconnect()
        async with asyncio.timeout(10):
            while (await pupil.call("GET", state_path)).body:
                await asyncio.sleep(0.2)
    finally:
        await room.disconnect()
        await sfu.close()
