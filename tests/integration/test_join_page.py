"""The registration page `/join` in headless Chromium, against a real Synapse (issue 13).

A parent opens the teacher's link `<server>/join#<CODE>` on a phone and goes through the
page's steps (the code and whose it is, the phone, the SMS code from the `file` gateway's
outbox, a password) to an account that signs in and is in the class's rooms. Refusals show
a message in Russian at the step where they happen and create nothing. The page is driven
over the DevTools protocol as a user would: typing into its fields and pressing its buttons.
A screenshot of every step is kept in the test's folder.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.integration.clients import NewUser, User, login
from tests.integration.harness import Deployment, copy_roster, sferumctl
from tests.integration.test_quiet_hours import chat_with_bot
from tests.integration.test_registration import link_code
from tests.integration.test_sfu_auth import openid_token
from tests.integration.test_sfu_page import CHROMIUM, Browser

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="no chromium (scripts/test installs it)"
    ),
]

SERVER = "join.test"
PASSWORD = "ёлка-2026-зима"
GUARDIAN_PHONE = "+7 903 123-45-01"  # g-volkova's number in the roster; her son is p-5a-1
# Whom a parent stuck on this page can write to: the server's support well-known (MSC1929).
SUPPORT_OPTIONS = (
    "--support-email", "admin@school.test", "--support-page", "https://school.test/help",
)  # fmt: skip


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("join")
    deployment = Deployment(tmp / SERVER, SERVER, extra_init=SUPPORT_OPTIONS)
    deployment.init()
    deployment.start()
    try:
        sferumctl("roster", "import", str(deployment.dir), str(copy_roster(tmp / "roster")))
        report = deployment.reconcile()
        assert report["failures"] == 0, report
        yield deployment
    finally:
        deployment.stop()


class Page:
    """The `/join` page in one Chromium, used as a person would."""

    def __init__(self, browser: Browser, shots: Path, name: str) -> None:
        self.browser = browser
        self.shots = shots
        self.name = name
        self.taken = 0

    async def step(self) -> str:
        return str(await self.browser.evaluate("document.body.dataset.step || ''"))

    async def error(self) -> str:
        shown = await self.browser.evaluate(
            "document.getElementById('error').hidden ? '' :"
            " document.getElementById('error').textContent"
        )
        return str(shown or "")

    async def text(self, element: str) -> str:
        return str(
            await self.browser.evaluate(f"document.getElementById('{element}').textContent")
        )

    async def type(self, element: str, value: str) -> None:
        await self.browser.evaluate(
            f"document.getElementById('{element}').value = {json.dumps(value)}"
        )

    async def press(self, button: str, until: str | None = None) -> None:
        """Press a button; wait until the page shows `until` (a step) or an error."""
        before = await self.step()
        await self.browser.evaluate(f"document.getElementById('{button}').click()")
        async with asyncio.timeout(30):
            while True:
                await asyncio.sleep(0.1)
                busy = await self.browser.evaluate(f"document.getElementById('{button}').disabled")
                step, error = await self.step(), await self.error()
                if not busy and (error or step == until or (until is None and step != before)):
                    break
        await self.shot(f"{button}-{until or 'done'}")

    async def shot(self, name: str) -> None:
        self.taken += 1
        shot = await self.browser.command("Page.captureScreenshot", format="png")
        path = self.shots / f"{self.name}-{self.taken:02d}-{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))


OpenPage = Callable[[str], Awaitable[Page]]  # the page, opened at `/join#<fragment>`


@pytest.fixture
async def page_of(deployment: Deployment, tmp_path: Path) -> AsyncIterator[OpenPage]:
    opened: list[Browser] = []
    async with aiohttp.ClientSession() as session:

        async def open_page(fragment: str) -> Page:
            profile = tmp_path / f"profile-{len(opened)}"
            browser = Browser(profile, f"{deployment.base_url}/join#{fragment}", False)
            opened.append(browser)
            await browser.connect(session)
            # A phone's screen.
            await browser.command(
                "Emulation.setDeviceMetricsOverride",
                width=390,
                height=844,
                deviceScaleFactor=1,
                mobile=True,
            )
            async with asyncio.timeout(30):
                while (
                    await browser.evaluate("document.body && document.body.dataset.step") != "code"
                ):
                    await asyncio.sleep(0.1)
            page = Page(browser, tmp_path, f"page{len(opened)}")
            await page.shot("opened")
            return page

        yield open_page
        for browser in opened:
            await browser.close()


def sms_code(deployment: Deployment, to: str) -> str:
    return NewUser(deployment.base_url, deployment.dir / "sms-outbox.jsonl").last_sms_code(to)


async def test_a_parent_registers_from_the_teachers_link_and_signs_in(
    deployment: Deployment, page_of: OpenPage
) -> None:
    code = link_code(deployment, "g-volkova")
    page = await page_of(code)
    await page.press("code-next", until="confirm")
    assert await page.error() == ""
    assert await page.text("person-name") == "Анна Сергеевна Волкова"
    assert await page.text("person-role") == "родитель"
    await page.press("confirm-yes", until="phone")
    await page.type("phone", GUARDIAN_PHONE)
    await page.press("phone-next", until="sms")
    await page.type("sms", sms_code(deployment, "+79031234501"))
    await page.press("sms-next", until="password")
    await page.type("password", PASSWORD)
    await page.type("password-again", PASSWORD)
    await page.press("password-next", until="done")
    assert await page.error() == ""
    user_id = await page.text("done-login")
    assert user_id.startswith("@") and user_id.endswith(f":{SERVER}"), user_id
    assert await page.text("done-server") == deployment.base_url
    # Signs in with the password just set, and is already in the class's parents' chat.
    user = await login(deployment.base_url, user_id, PASSWORD)
    parents = await user.resolve(f"#parents-5a:{SERVER}")
    async with asyncio.timeout(60):
        while parents not in await user.joined_rooms():
            await asyncio.sleep(0.5)
    # The link, used: says so at once.
    again = await page_of(code)
    await again.press("code-next")
    assert "уже использован" in await again.error()
    assert await again.step() == "code"


def has_account(deployment: Deployment, localpart: str) -> bool:
    return bool(deployment.sql("SELECT 1 FROM users WHERE name = ?", f"@{localpart}:{SERVER}"))


async def test_refusals_say_why_in_russian_where_they_happen_and_create_nothing(
    deployment: Deployment, page_of: OpenPage
) -> None:
    # A code nobody issued (typed by hand, in lower case and without dashes).
    page = await page_of("")
    await page.type("code", "abcd efgh jkmn")
    await page.press("code-next")
    assert "Такого кода нет" in await page.error()
    assert await page.step() == "code"

    # A pupil with a parent's number: refused once the SMS code is in, back to the phone step.
    code = link_code(deployment, "p-5a-2")
    page = await page_of(code)
    await page.press("code-next", until="confirm")
    assert await page.text("person-role") == "ученик"
    await page.press("confirm-yes", until="phone")
    await page.type("phone", "+7 926 123-45-03")  # g-morozova's, in the roster
    await page.press("phone-next", until="sms")
    await page.type("sms", "000000")
    await page.press("sms-next")
    assert "не подошёл" in await page.error()
    await page.type("sms", sms_code(deployment, "+79261234503"))
    await page.press("sms-next")
    assert "номер родителя" in await page.error() or "свой номер" in await page.error()
    assert await page.step() == "phone"
    assert not has_account(deployment, "morozova.sofia")

    # A number that is not one, then her own; passwords that do not match, then one that does.
    await page.type("phone", "12")
    await page.press("phone-next")
    assert "не номер телефона" in await page.error() or "Пример" in await page.error()
    await page.type("phone", "+7 916 555-01-02")
    await page.press("phone-next", until="sms")
    await page.type("sms", sms_code(deployment, "+79165550102"))
    await page.press("sms-next", until="password")
    await page.type("password", PASSWORD)
    await page.type("password-again", PASSWORD + "!")
    await page.press("password-next")
    assert "не совпадают" in await page.error()
    assert not has_account(deployment, "morozova.sofia")
    await page.type("password-again", PASSWORD)
    await page.press("password-next", until="done")
    assert await page.text("done-login") == f"@morozova.sofia:{SERVER}"


async def test_the_page_loads_nothing_from_elsewhere_and_bad_requests_get_clear_errors(
    deployment: Deployment,
) -> None:
    base = deployment.base_url
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/join") as page:
            assert page.status == 200 and page.content_type == "text/html"
            csp = page.headers["Content-Security-Policy"]
            assert "default-src 'none'" in csp and "script-src 'self'" in csp, csp
            assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
            assert page.headers["Referrer-Policy"] == "no-referrer"
            html = await page.text()
        assert "http" not in html.split("<body>")[0]  # no external style or script
        async with session.get(f"{base}/join/static/join.js") as script:
            assert script.status == 200 and script.content_type == "application/javascript"
        for body, status, errcode in (
            (b"{not json", 400, "M_NOT_JSON"),
            (b"[]", 400, "M_BAD_JSON"),
            (b'{"code": 5}', 400, "M_INVALID_PARAM"),
            (b'{"code": "ABCD-EFGH-JKMN"}', 404, "M_NOT_FOUND"),
        ):
            async with session.post(f"{base}/join/code", data=body) as reply:
                answer = await reply.json()
                assert (reply.status, answer.get("errcode")) == (status, errcode), (body, answer)
        async with session.post(f"{base}/join/code", json={"code": "XXXX"}) as reply:
            answer = await reply.json()
            assert answer["ru.sferum.reason"] == "ru.sferum.link_code_unknown", answer


async def test_a_printed_cards_qr_link_opens_the_sign_in_help(
    deployment: Deployment, tmp_path: Path
) -> None:
    """`sferumctl accounts sheet` prints `<server>/join#<login>` as the card's QR code."""
    login = f"@lebedev.maksim:{SERVER}"
    browser = Browser(tmp_path / "profile", f"{deployment.base_url}/join#{login}", False)
    async with aiohttp.ClientSession() as session:
        try:
            await browser.connect(session)
            async with asyncio.timeout(30):
                while (
                    await browser.evaluate("document.body && document.body.dataset.step") != "done"
                ):
                    await asyncio.sleep(0.1)
            text = await browser.evaluate("document.querySelector('main').innerText")
        finally:
            await browser.close()
    assert "Как войти" in text and login in text and deployment.base_url in text, text
    assert "напечатан на вашей карточке" in text and "Код приглашения" not in text


def test_a_class_sheet_names_people_and_classes_and_keeps_teachers_apart(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The printed cards tell the truth: names and the class's title, not roster IDs; the
    class's teachers on a sheet of their own."""
    out = tmp_path / "5a.html"
    sferumctl("accounts", "sheet", str(deployment.dir), "--class", "5a", "--out", str(out))
    html = out.read_text(encoding="utf-8")
    assert "<title>Учётные записи: класс 5А</title>" in html
    families, teachers = html.split('<div class="staff-sheet">')
    assert "Артём Дмитриевич Волков" in families and "Варвара Ивановна Новикова" in families
    assert '<div class="classes">5А</div>' in families
    assert "Учителя и сотрудники: класс 5А" in teachers
    assert "Марина Сергеевна Иванова" in teachers and "Марина Сергеевна Иванова" not in families
    for roster_id in ("p-5a-1", "t-1", ">5a<"):
        assert roster_id not in html, roster_id


async def test_the_support_contacts_are_served_beside_synapses_well_known(
    deployment: Deployment,
) -> None:
    """MSC1929's document from `init --support-email/--support-page`, readable from web apps
    (CORS), while Synapse's own `client` and `server` files answer as without the module."""
    base = deployment.base_url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/.well-known/matrix/support") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json"
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            assert await response.json() == {
                "contacts": [{"email_address": "admin@school.test", "role": "m.role.admin"}],
                "support_page": "https://school.test/help",
            }
        async with http.get(f"{base}/.well-known/matrix/client") as response:
            assert response.status == 200
            assert (await response.json())["m.homeserver"] == {"base_url": f"{base}/"}
        async with http.get(f"{base}/.well-known/matrix/server") as response:
            assert response.status == 404  # serve_server_wellknown is off, as Synapse's default


# -- then into the app: sign-in as the phone apps do it ------------------------------------------


SLIDING_SYNC = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


async def test_element_x_signs_in_with_a_password_and_lists_exactly_the_school_rooms(
    deployment: Deployment,
) -> None:
    """Element X's requests (matrix-rust-sdk: server discovery, versions, auth metadata, login
    flows, password login, then simplified sliding sync, MSC4186), replayed against this server
    with the module loaded: a pupil's room list is exactly their rooms, each with its name."""
    pupil = deployment.issue("p-6b-2")["p-6b-2"]  # a pupil no other test here signs up
    base = deployment.base_url
    async with aiohttp.ClientSession() as http:

        async def get(path: str) -> tuple[int, dict[str, object]]:
            async with http.get(base + path) as response:
                return response.status, await response.json(content_type=None) or {}

        status, well_known = await get("/.well-known/matrix/client")
        assert status == 200, well_known
        assert well_known["m.homeserver"] == {"base_url": f"{base}/"}, well_known
        status, versions = await get("/_matrix/client/versions")
        features = versions["unstable_features"]
        assert isinstance(features, dict) and features.get("org.matrix.simplified_msc3575")
        # No next-generation auth here (no OIDC issuer): the apps offer the password form.
        status, _ = await get("/_matrix/client/unstable/org.matrix.msc2965/auth_metadata")
        assert status in (401, 404), status
        status, flows = await get("/_matrix/client/v3/login")
        types = {f["type"] for f in flows["flows"]}  # type: ignore[attr-defined]
        assert "m.login.password" in types, flows
        login_body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "popova.viktoria"},  # as typed
            "password": pupil["password"],
            "initial_device_display_name": "Element X iOS",
        }
        async with http.post(f"{base}/_matrix/client/v3/login", json=login_body) as response:
            session = await response.json()
            assert response.status == 200, session
    assert session["user_id"] == f"@popova.viktoria:{SERVER}"
    user = User(base, session["user_id"], session["access_token"])
    deployment.reconcile()
    joined = await user.joined_rooms()
    assert len(joined) >= 5, joined  # the school and class spaces, chat, news, lesson, diary…

    request = {
        "conn_id": "room-list",
        "lists": {
            "all_rooms": {
                "ranges": [[0, 99]],
                "timeline_limit": 1,
                "required_state": [
                    ["m.room.name", ""],
                    ["m.room.avatar", ""],
                    ["m.room.encryption", ""],
                    ["m.room.member", "$LAZY"],
                    ["m.room.create", ""],
                ],
            }
        },
        "extensions": {"account_data": {"enabled": True}, "receipts": {"enabled": True}},
    }
    reply = await user.call_path("POST", f"{SLIDING_SYNC}?timeout=0", request)
    assert reply.status == 200, reply
    listed = reply.body["lists"]["all_rooms"]
    assert listed["count"] == len(joined), (listed, joined)
    rooms = reply.body["rooms"]
    assert set(rooms) == joined
    for room_id, room in rooms.items():
        assert room.get("name"), (room_id, room)  # every school room has its name
    chat = await user.resolve(f"#class-6b:{SERVER}")
    state = await user.call("GET", f"/rooms/{chat}/state/m.room.name")
    assert rooms[chat]["name"] == state.body["name"], (rooms[chat], state)


# -- the teacher's invite links: «коды 5А» to the platform bot, or the staff room's page ---------


async def account_of(deployment: Deployment, person: str) -> User:
    """The person's account, signed in; with a new card if it was issued before (another test)."""
    account = deployment.issue(person)[person]
    if account["password"] is None:
        out = sferumctl(
            "accounts", "reset", str(deployment.dir), "--person", person, "--format", "json"
        )
        [account] = json.loads(out.stdout)
    return await login(deployment.base_url, account["user_id"], account["password"])


async def test_a_class_teacher_gets_invite_links_for_the_class_and_no_one_else_does(
    deployment: Deployment,
) -> None:
    base = deployment.base_url

    async def signed_in(person: str) -> User:
        return await account_of(deployment, person)

    teacher = await signed_in("t-1")

    class_teacher = await chat_with_bot(teacher, SERVER)  # 5А's class teacher
    answer = await class_teacher("коды 5а")
    assert answer.startswith("Ссылки-приглашения для 5А"), answer
    links = re.findall(rf"{re.escape(base)}/join#([A-Z0-9-]+)", answer)
    assert links, answer
    # Pupils and parents of 5А without an account, not its teachers; each link works.
    assert "Варвара Ивановна Новикова" in answer and "Иван Александрович Новиков" in answer
    assert "Марина" not in answer.split("\n\n")[1], answer
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/join/code", json={"code": links[0]}) as reply,
    ):
        assert reply.status == 200, await reply.text()
    issued_by = deployment.sql("SELECT issued_by FROM sferum_link_codes WHERE code = ?", links[0])
    assert issued_by == [(teacher.user_id,)], issued_by

    # 5А's other teacher, a class teacher asking for another class: refused, and why.
    other_teacher = await chat_with_bot(await signed_in("t-3"), SERVER)
    assert "выдаёт классный руководитель" in await other_teacher("коды 5А")
    assert "выдаёт классный руководитель" in await class_teacher("коды 6Б")
    assert "нет в вашей школе" in await class_teacher("коды 9Я")
    assert "напишите «коды 5А»" in await class_teacher("коды")
    # The school's administration may.
    head = await chat_with_bot(await signed_in("staff-2"), SERVER)
    assert (await head("!коды 6Б")).startswith("Ссылки-приглашения для 6Б")

    # A parent or a pupil cannot even bring the bot into a chat.
    for person in ("g-kozlova", "p-6b-3"):
        user = await signed_in(person)
        invited = await user.create_room(invite=[f"@sferum:{SERVER}"], is_direct=True)
        assert invited.status == 403, (person, invited)


WIDGET_HOST = """<!doctype html>
<html><head><meta charset="utf-8"><title>client</title></head>
<body data-openid='{openid}'>
<iframe id="widget" src="{src}" width="600" height="800"></iframe>
<script>
"use strict";
// A Matrix client's side of the widget API, as Element speaks it to a room widget.
const openid = JSON.parse(document.body.dataset.openid);
const frame = document.getElementById("widget");
let n = 0;
function toWidget(action, data) {{
  frame.contentWindow.postMessage(
    {{api: "toWidget", widgetId: "w1", requestId: "host-" + (++n), action: action, data: data}},
    "*");
}}
window.addEventListener("message", (event) => {{
  if (event.source !== frame.contentWindow) return;
  const msg = event.data;
  if (msg.api === "toWidget" && msg.response && msg.action === "capabilities") {{
    toWidget("notify_capabilities", {{requested: msg.response.capabilities, approved: []}});
  }}
  if (msg.api === "fromWidget" && msg.action === "get_openid") {{
    frame.contentWindow.postMessage(
      Object.assign({{}}, msg, {{response: Object.assign({{state: "allowed"}}, openid)}}), "*");
  }}
}});
frame.addEventListener("load", () => toWidget("capabilities", {{}}));
</script>
</body></html>
"""


async def test_the_staff_rooms_page_gives_a_class_teacher_links_to_print(
    deployment: Deployment, tmp_path: Path
) -> None:
    base = deployment.base_url
    teacher = await account_of(deployment, "t-2")  # 6Б's class teacher
    deployment.reconcile()  # into the staff room
    staff_room = await teacher.resolve(f"#staff-school-1:{SERVER}")
    widget = await teacher.call(
        "GET", f"/rooms/{staff_room}/state/im.vector.modular.widgets/ru.sferum.invites"
    )
    assert widget.status == 200 and widget.body["url"] == f"{base}/join/codes", widget

    openid = await openid_token(teacher)
    host = web.Application()

    async def page(request: web.Request) -> web.Response:
        here = f"http://{request.host}"
        src = f"{base}/join/codes?widgetId=w1&parentUrl={here}/"
        body = WIDGET_HOST.format(openid=json.dumps(openid), src=src)
        return web.Response(text=body, content_type="text/html")

    host.router.add_get("/", page)
    server = TestServer(host)
    await server.start_server()
    browser = Browser(tmp_path / "profile", str(server.make_url("/")), False)
    try:
        async with aiohttp.ClientSession() as session:
            await browser.connect(session)
            frame = await browser.frame_context(base)

            async def in_page(expression: str) -> object:
                return await browser.evaluate(expression, frame)

            async with asyncio.timeout(30):
                while await in_page("document.getElementById('issue').disabled") is not False:
                    await asyncio.sleep(0.1)
            await in_page("document.getElementById('class').value = '6б'")
            await in_page("document.getElementById('issue').click()")
            async with asyncio.timeout(30):
                while not await in_page("document.body.dataset.issued"):
                    await asyncio.sleep(0.1)
            shown = str(await in_page("document.getElementById('result').innerText"))
    finally:
        await browser.close()
        await server.close()
    assert "Класс 6Б" in shown and f"{base}/join#" in shown, shown
    assert "Сергей" in shown or "Ирина" in shown, shown  # 6Б's parents

    # The page's endpoint: a pupil is refused in Russian, a made-up token is no one.
    pupil = await account_of(deployment, "p-6b-4")
    async with aiohttp.ClientSession() as http:
        for token, status, words in (
            ((await openid_token(pupil))["access_token"], 403, "только классные руководители"),
            ("not-a-token", 401, "откройте страницу заново"),
        ):
            async with http.post(
                f"{base}/join/codes/issue", json={"openid_token": token, "class": "6Б"}
            ) as reply:
                answer = await reply.json()
                assert reply.status == status and words in answer["error"], answer
