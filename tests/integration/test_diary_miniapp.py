"""The diary mini-app in headless Chromium, against a real Synapse (issue 4, point 7).

A full Element is not available here, so the test plays the Matrix client itself: a tiny host
page holds the mini-app in an iframe and speaks the widget API to it (answers `capabilities`,
then `get_openid` with an OpenID token that the real Synapse issued for a real account). The
mini-app's routes are mounted on an aiohttp server in the test process over a snapshot of the
demo diary; the OpenID check and the module's `who` go to the real Synapse.

The host page is served from the mini-app's own origin only so that it can copy the rendered
iframe into its own DOM for `--dump-dom`; the widget API is used exactly as across origins.
"""

from __future__ import annotations

import asyncio
import html
import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridges.diary.config import BridgeConfig
from bridges.diary.miniapp import MiniApp
from bridges.diary.render import ru_date
from bridges.diary.rooms import RoomDirectory
from bridges.diary.sources.csvsource import OneRosterCsvSource
from sferum_shared.adminapi import PREFIX
from sferum_shared.vocabulary import WidgetId
from synapse_sferum.ctl.demo import DemoCalendar
from synapse_sferum.ctl.deploy import BOT_LOCALPART
from tests.demo import DIARY, demo_folder, noon, today
from tests.integration.clients import login
from tests.integration.harness import Deployment, demo_diary_folder, sferumctl

pytestmark = pytest.mark.integration

SERVER = "miniapp.test"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PEOPLE = ("p-5a-1", "p-5a-2", "g-volkova", "g-fyodorov", "t-1", "t-2", "staff-1")

HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>host</title></head>
<body data-openid="{openid}" data-delay="{delay}">
<div id="result">waiting</div>
<iframe id="widget" src="{src}" width="800" height="600"></iframe>
<script>
"use strict";
// The Matrix client's side of the widget API, as matrix-widget-api's ClientWidgetApi speaks it.
const openid = JSON.parse(document.body.dataset.openid);
const delay = document.body.dataset.delay === "1";
const frame = document.getElementById("widget");
const log = [];
let n = 0;
function toWidget(action, data) {{
  frame.contentWindow.postMessage(
    {{api: "toWidget", widgetId: "w1", requestId: "host-" + (++n), action: action, data: data}},
    window.location.origin);
}}
window.addEventListener("message", (event) => {{
  if (event.source !== frame.contentWindow) return;
  const msg = event.data;
  log.push(msg.action + (msg.response ? ":reply" : ""));
  if (msg.api === "toWidget" && msg.response && msg.action === "capabilities") {{
    toWidget("notify_capabilities", {{requested: msg.response.capabilities, approved: []}});
  }}
  if (msg.api === "fromWidget" && msg.action === "get_openid" && msg.widgetId === "w1") {{
    if (delay) {{  // Element asks the user first: "request", then openid_credentials
      frame.contentWindow.postMessage(Object.assign({{}}, msg, {{response: {{state: "request"}}}}),
                                      window.location.origin);
      setTimeout(() => toWidget("openid_credentials",
          Object.assign({{state: "allowed", original_request_id: msg.requestId}}, openid)), 100);
    }} else {{
      frame.contentWindow.postMessage(
          Object.assign({{}}, msg, {{response: Object.assign({{state: "allowed"}}, openid)}}),
          window.location.origin);
    }}
  }}
}});
frame.addEventListener("load", () => toWidget("capabilities", {{}}));
function copy() {{
  const doc = frame.contentDocument;
  const status = doc && doc.getElementById("status");
  const state = status ? status.dataset.state : "";
  if (!state || state === "loading" || state === "openid") {{ setTimeout(copy, 50); return; }}
  const out = document.getElementById("result");
  out.dataset.state = state;
  out.dataset.log = log.join(",");
  out.innerHTML = doc.querySelector("main").innerHTML;
}}
setTimeout(copy, 50);
</script></body></html>
"""


@attrs.frozen
class Site:
    deployment: Deployment
    accounts: dict[str, dict[str, Any]]
    url: str  # the mini-app's test server
    week: date  # the Monday of the week the mini-app and the demo data are set in

    async def openid(self, person: str) -> dict[str, Any]:
        """A real OpenID token of the person's account, as the widget API would hand it over."""
        user = await login(
            self.deployment.base_url,
            self.accounts[person]["user_id"],
            self.accounts[person]["password"],
        )
        quoted = urllib.parse.quote(user.user_id)
        reply = await user.call("POST", f"/user/{quoted}/openid/request_token", {})
        assert reply.status == 200, reply
        assert reply.body["matrix_server_name"] == SERVER
        return reply.body


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, Any]]:
    deployment = Deployment(tmp_path_factory.mktemp("miniapp") / SERVER, SERVER)
    deployment.init()
    deployment.start()
    try:
        sferumctl("roster", "import", str(deployment.dir), str(demo_diary_folder()))
        yield deployment, deployment.issue(*PEOPLE)
    finally:
        deployment.stop()


@pytest.fixture
async def site(deployment: tuple[Deployment, Any]) -> AsyncIterator[Site]:
    hs, accounts = deployment
    # The mini-app's clock and the demo data agree on the day (today's, whatever it is).
    day = today()
    clock = noon(day)
    source = OneRosterCsvSource(demo_folder(DIARY, day), "csv:demo", clock=clock)
    snapshot = await source.snapshot()
    config = BridgeConfig(
        homeserver_url=hs.base_url,
        server_name=SERVER,
        bot_user_id=f"@{BOT_LOCALPART}:{SERVER}",
        as_token=hs.secrets["as_token"],  # «Новости» reads the class news room as the bot
        admin_api_url=f"{hs.base_url}{PREFIX}",
        admin_api_secret=hs.secrets["admin_api_secret"],
        database=":memory:",
        sources=(),
        ical_secret="i" * 32,
    )
    app = web.Application()
    rooms = RoomDirectory(config.admin_api_url, config.admin_api_secret)
    app.add_routes(MiniApp(config, lambda: snapshot, clock, rooms).routes())

    async def host(request: web.Request) -> web.Response:
        page = HOST_PAGE.format(
            openid=html.escape(request.query["openid"]),
            delay=html.escape(request.query.get("delay", "0")),
            src=html.escape(request.query["src"]),
        )
        return web.Response(text=page, content_type="text/html")

    app.router.add_get("/host", host)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Site(hs, accounts, str(server.make_url("")).rstrip("/"), DemoCalendar(day).monday(0))
    finally:
        await server.close()


def chromium_dom(profile: Path, url: str) -> str:
    """The host page's DOM once the widget settled (virtual time waits for the fetches)."""
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=20000",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return out.stdout


async def show(
    site: Site, tmp: Path, kind: str, scope: str, openid: dict[str, Any], delay: bool = False
) -> tuple[str, str]:
    """(the widget's final state, the host's copy of its DOM) in headless Chromium."""
    src = "/app?" + urllib.parse.urlencode(
        {"kind": kind, "scope": scope, "room": "!x:" + SERVER, "week": site.week.isoformat(),
         "widgetId": "w1", "parentUrl": f"{site.url}/host"}
    )  # fmt: skip
    url = f"{site.url}/host?" + urllib.parse.urlencode(
        {"openid": json.dumps(openid), "src": src, "delay": "1" if delay else "0"}
    )
    dom = await asyncio.to_thread(chromium_dom, tmp / "profile", url)
    start = dom.index('<div id="result"')
    head = dom[start : dom.index(">", start)]
    state = head.split('data-state="')[1].split('"')[0] if "data-state" in head else ""
    return state, dom


needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="no chromium (scripts/test installs it)"
)


@needs_chromium
async def test_the_pupil_sees_own_marks(site: Site, tmp_path: Path) -> None:
    state, dom = await show(site, tmp_path, "diary", "p-5a-1", await site.openid("p-5a-1"))
    assert state == "ok", dom
    assert 'id="marks"' in dom
    assert "Контрольная работа по математике №2" in dom
    assert "<td>5</td>" in dom
    assert "capabilities:reply" in dom and "get_openid" in dom


@needs_chromium
async def test_a_guardian_sees_the_marks_after_the_user_allowed_it(
    site: Site, tmp_path: Path
) -> None:
    openid = await site.openid("g-volkova")
    state, dom = await show(site, tmp_path, "diary", "p-5a-1", openid, delay=True)
    assert state == "ok", dom
    assert "Контрольная работа по математике №2" in dom


@needs_chromium
async def test_a_classmate_gets_no_access(site: Site, tmp_path: Path) -> None:
    state, dom = await show(site, tmp_path, "diary", "p-5a-1", await site.openid("p-5a-2"))
    assert state == "forbidden", dom
    assert "Нет доступа" in dom
    assert "Контрольная работа" not in dom and 'id="marks"' not in dom


@needs_chromium
async def test_a_forged_token_is_not_accepted(site: Site, tmp_path: Path) -> None:
    forged = {"access_token": "garbage", "token_type": "Bearer",
              "matrix_server_name": SERVER, "expires_in": 3600}  # fmt: skip
    state, dom = await show(site, tmp_path, "diary", "p-5a-1", forged)
    assert state == "unauthorized", dom
    assert "Контрольная работа" not in dom


@needs_chromium
async def test_the_class_page_shows_homework_and_the_week(site: Site, tmp_path: Path) -> None:
    state, dom = await show(site, tmp_path, "class", "5a", await site.openid("p-5a-2"))
    assert state == "ok", dom
    assert 'id="homework"' in dom and "§12, упр. 3–5" in dom
    assert 'id="lessons"' in dom and "Математика" in dom
    for weekday in range(5):  # the whole week, Monday to Friday, in the school's own words
        assert ru_date(site.week + timedelta(days=weekday)) in dom, dom
    assert "/ical/5a/" in dom
    state, dom = await show(site, tmp_path, "class", "6b", await site.openid("p-5a-2"))
    assert state == "forbidden", dom


async def view(site: Site, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{site.url}/app/api/view", json=body) as response,
    ):
        return response.status, await response.json()


async def test_the_view_api_by_role(site: Site) -> None:
    """Without a browser: every role against the rules, through the real OpenID check."""
    cases = [
        ("p-5a-1", "diary", "p-5a-1", 200),
        ("g-volkova", "diary", "p-5a-1", 200),
        ("t-1", "diary", "p-5a-1", 200),  # teaches 5А
        ("staff-1", "diary", "p-5a-1", 200),
        ("p-5a-2", "diary", "p-5a-1", 403),
        ("t-2", "diary", "p-5a-1", 403),  # teaches 6Б only
        ("g-volkova", "diary", "p-5a-2", 403),
        ("g-volkova", "class", "5a", 200),
        ("t-2", "class", "5a", 403),
        ("t-2", "class", "6b", 200),
    ]
    for person, kind, scope, status in cases:
        openid = await site.openid(person)
        got, body = await view(site, {"openid": openid, "kind": kind, "scope": scope})
        assert got == status, (person, kind, scope, body)
        if kind == "diary" and got == 200:
            works = {m["work"] for m in body["marks"]}
            assert "Контрольная работа по математике №2" in works, body
            assert not works & {"Проверочная работа по истории: Древний Египет"}  # 6Б's


async def test_tokens_that_are_not_ours_are_refused(site: Site) -> None:
    openid = await site.openid("p-5a-1")
    for bad in (
        {**openid, "access_token": openid["access_token"] + "x"},
        {**openid, "matrix_server_name": "evil.test"},
        {"access_token": "", "matrix_server_name": SERVER},
        None,
    ):
        got, body = await view(site, {"openid": bad, "kind": "diary", "scope": "p-5a-1"})
        assert got == 401, (bad, body)
        assert "marks" not in body


async def test_the_modules_who_endpoint(site: Site) -> None:
    hs = site.deployment
    pupil = hs.admin("who", {"user_id": site.accounts["p-5a-1"]["user_id"]})
    assert pupil["person"] == "p-5a-1" and pupil["roles"] == ["student"]
    assert "5a" in pupil["student_class_ids"]
    guardian = hs.admin("who", {"user_id": site.accounts["g-volkova"]["user_id"]})
    assert guardian["child_ids"] == ["p-5a-1"] and "5a" in guardian["child_class_ids"]
    teacher = hs.admin("who", {"person": "t-1"})
    assert teacher["user_id"] == site.accounts["t-1"]["user_id"]
    assert "5a" in teacher["teacher_class_ids"]
    nobody = hs.admin("who", {"user_id": f"@nobody:{SERVER}"})
    assert nobody["person"] is None and nobody["roles"] == []
    for body in ({}, {"user_id": 5}, {"user_id": "@a:b", "person": "p-5a-1"}):
        with pytest.raises(urllib.error.HTTPError) as e:
            hs.admin("who", body)
        assert e.value.code == 400
    request = urllib.request.Request(
        f"{hs.base_url}{PREFIX}/who", data=b'{"person": "p-5a-1"}', method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=30)
    assert e.value.code == 401  # the admin secret is required


async def test_the_widget_is_put_into_diary_rooms_and_class_chats_once(site: Site) -> None:
    from bridges.diary.matrix import BridgeClient
    from bridges.diary.miniapp import install_widgets
    from sferum_shared.matrix import WIDGETS as WIDGET_EVENT

    hs = site.deployment
    hs.reconcile()  # the rooms
    client = BridgeClient(hs.base_url, f"@{BOT_LOCALPART}:{SERVER}", hs.secrets["as_token"])
    rooms = RoomDirectory(f"{hs.base_url}{PREFIX}", hs.secrets["admin_api_secret"])
    done: set[str] = set()
    try:
        put = await install_widgets(
            client, rooms, "https://diary.miniapp.test", ["5a", "no-such-class"], ["p-5a-1"], done
        )
        assert put == 3 and done == {"class-5a", "diary-p-5a-1", "news-5a"}
        again = await install_widgets(
            client, rooms, "https://diary.miniapp.test", ["5a"], ["p-5a-1"], done
        )
        assert again == 0
    finally:
        await client.close()
    pupil = await login(
        hs.base_url, site.accounts["p-5a-1"]["user_id"], site.accounts["p-5a-1"]["password"]
    )
    for alias, kind in (
        (f"#diary-p-5a-1:{SERVER}", "diary"),
        (f"#class-5a:{SERVER}", "class"),
        (f"#news-5a:{SERVER}", "news"),
    ):
        room = urllib.parse.quote(await pupil.room(alias))
        reply = await pupil.call("GET", f"/rooms/{room}/state/{WIDGET_EVENT}/{WidgetId.DIARY}")
        assert reply.status == 200, (alias, reply)
        assert reply.body["type"] == "m.custom"
        assert f"kind={kind}" in reply.body["url"] and "$matrix_room_id" in reply.body["url"]


ARTICLE = (
    "<h1>Весенний концерт</h1><p>В пятницу в 18:00, актовый зал.</p>"
    '<script>alert("xss")</script><img src="mxc://x/y" onerror="alert(1)" alt="афиша">'
    '<a href="javascript:alert(2)">программа</a>'
)


async def post_article(site: Site, title: str) -> None:
    """A staff member posts an HTML article in the school news (rooms provisioned first)."""
    site.deployment.reconcile()
    staff = await login(
        site.deployment.base_url,
        site.accounts["staff-1"]["user_id"],
        site.accounts["staff-1"]["password"],
    )
    news = await staff.resolve(f"#news-school-school-1:{SERVER}")
    reply = await staff.send(
        news,
        "m.room.message",
        {"msgtype": "m.text", "body": f"{title}\nВ пятницу в 18:00",
         "format": "org.matrix.custom.html",
         "formatted_body": ARTICLE.replace("Весенний концерт", title)},
    )  # fmt: skip
    assert reply.status == 200, reply


async def news_of(site: Site, person: str, title: str) -> dict[str, Any]:
    """The «Новости» view once the article's copy reached the class news room."""
    openid = await site.openid(person)
    for _ in range(100):
        got, body = await view(site, {"openid": openid, "kind": "news", "scope": "5a"})
        assert got == 200, body
        if any(a["title"] == title for a in body["articles"]):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {title} in the news of 5a")


async def test_the_news_view_shows_school_articles_to_the_class_only(site: Site) -> None:
    await post_article(site, "Весенний концерт")
    body = await news_of(site, "g-volkova", "Весенний концерт")
    article = next(a for a in body["articles"] if a["title"] == "Весенний концерт")
    assert "Смирнова" in article["author"]  # the real name the module put on the copy
    assert article["author_id"] == site.accounts["staff-1"]["user_id"]
    assert article["summary"].startswith("В пятницу в 18:00") and article["time"]
    assert "<h1>Весенний концерт</h1>" in article["html"]
    assert "[афиша]" in article["html"]
    raw = json.dumps(body)
    assert "<script" not in raw and "alert" not in raw and "javascript:" not in raw
    assert "onerror" not in raw
    openid = await site.openid("g-fyodorov")  # a guardian of 6Б
    got, refused = await view(site, {"openid": openid, "kind": "news", "scope": "5a"})
    assert got == 403 and "articles" not in refused, refused


@needs_chromium
async def test_the_news_page_shows_the_article_without_its_script(
    site: Site, tmp_path: Path
) -> None:
    await post_article(site, "Осенняя ярмарка")
    await news_of(site, "p-5a-1", "Осенняя ярмарка")
    state, dom = await show(site, tmp_path, "news", "5a", await site.openid("p-5a-1"))
    assert state == "ok", dom
    assert 'id="articles"' in dom and "Осенняя ярмарка" in dom and "Смирнова" in dom
    assert "<script>alert" not in dom and "onerror" not in dom and "javascript:" not in dom
