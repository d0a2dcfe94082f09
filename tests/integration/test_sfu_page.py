"""The call page in headless Chromium against the SFU in process (issue 5, point 9).

Two browsers open `/call#jwt=…` (the page's test mode: no Synapse, the tokens are minted with
`sfu.tokens.issue` as `/get_token` would), both with Chromium's fake camera and microphone: a
teacher, and a pupil whose token allows the microphone only, until the teacher allows the
camera with the page's button. The test reads the page's `getStats()` summary over the
DevTools protocol (a few lines of JSON over a WebSocket; virtual time, as in the diary test,
does not drive real WebRTC) and wants decoded frames to grow on both sides. Also: the widget
handshake, and the page's routes and headers. (The widget with a real OpenID token and real
Synapse is in `test_sfu_auth.py`.)
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sferum_shared import SYSTEM_CLOCK
from sfu import tokens
from sfu.grants import CAMERA, MICROPHONE, Grant
from sfu.page import page_headers, websocket_origin
from sfu.server import SfuServer
from tests.integration.test_sfu_signalling import offline_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SECRET = "page-test-secret-of-enough-length-here"
ROOM = tokens.room_name("!lesson:school.test")
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="no chromium (scripts/test installs it)"
)


# -- the page's own rules (pure) ----------------------------------------------------------------


def test_the_page_may_connect_to_itself_and_the_edges_only() -> None:
    assert websocket_origin("https://edge-1.school.test/sfu") == "wss://edge-1.school.test"
    assert websocket_origin("http://127.0.0.1:8011") == "ws://127.0.0.1:8011"
    assert websocket_origin("wss://edge-2.school.test") == "wss://edge-2.school.test"
    alone = page_headers(())["Content-Security-Policy"]
    assert "connect-src 'self';" in alone
    edges = page_headers(["https://edge-2.school.test", "https://edge-1.school.test/x"])
    assert (
        "connect-src 'self' wss://edge-1.school.test wss://edge-2.school.test;"
        in edges["Content-Security-Policy"]
    )


# -- the server ---------------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    config = offline_config(SECRET)
    app = SfuServer(config, SYSTEM_CLOCK).app()
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


async def test_page_and_static_files(server: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/call")) as response:
            assert response.status == 200
            assert "connect-src 'self'" in response.headers["Content-Security-Policy"]
            page = await response.text()
            assert 'src="call/static/call.js"' in page
        assets = (
            ("call.js", "application/javascript"),
            ("widget-api.js", "application/javascript"),  # shared with the diary mini-app
            ("call.css", "text/css"),
        )
        for name, kind in assets:
            async with session.get(server.make_url(f"/call/static/{name}")) as response:
                assert response.status == 200
                assert response.content_type == kind
        for name in ("call.html", "..%2Fpage.py", "nope.js"):
            async with session.get(server.make_url(f"/call/static/{name}")) as response:
                assert response.status == 404


# -- Chromium over the DevTools protocol --------------------------------------------------------


class Browser:
    """One headless Chromium with one page, and a minimal DevTools client for it."""

    def __init__(self, profile: Path, url: str, fake_devices: bool) -> None:
        self.profile = profile
        args = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "--autoplay-policy=no-user-gesture-required",
            # Host candidates as addresses, not mDNS names: aiortc resolves no `.local`.
            "--disable-features=WebRtcHideLocalIpsWithMdns",
        ]  # fmt: skip
        if fake_devices:
            args += ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
        self.process = subprocess.Popen(
            [*args, url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._ids = itertools.count(1)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.events: list[dict[str, Any]] = []  # DevTools events seen while awaiting answers

    async def connect(self, session: aiohttp.ClientSession) -> None:
        """Find the page's DevTools socket through the port Chromium wrote into the profile."""
        port_file = self.profile / "DevToolsActivePort"
        async with asyncio.timeout(30):
            while not port_file.exists() or not port_file.read_text().strip():
                assert self.process.poll() is None, "chromium exited"
                await asyncio.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                        targets = await response.json()
                except aiohttp.ClientError:
                    targets = []
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    break
                await asyncio.sleep(0.1)
        self._ws = await session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)

    async def command(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command's result; events that arrive meanwhile are kept."""
        ident = next(self._ids)
        assert self._ws is not None
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await self._receive()
            if message.get("id") == ident:
                result: dict[str, Any] = message["result"]
                return result
            self.events.append(message)

    async def _receive(self) -> dict[str, Any]:
        assert self._ws is not None
        message: dict[str, Any] = json.loads(await self._ws.receive_str(timeout=10))
        return message

    async def evaluate(self, expression: str, context: int | None = None) -> Any:
        where = {} if context is None else {"contextId": context}
        answer = await self.command(
            "Runtime.evaluate", expression=expression, returnByValue=True, **where
        )
        return answer["result"].get("value")

    async def frame_context(self, origin: str, timeout: float = 30) -> int:
        """The main-world JavaScript context of a (cross-origin) frame of `origin`, once its
        page has loaded (DevTools reports every context, existing and new, as an event)."""
        await self.command("Runtime.enable")
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if event.get("method") != "Runtime.executionContextCreated":
                        continue
                    context = event["params"]["context"]
                    if context["origin"] == origin and context["auxData"].get("isDefault"):
                        return int(context["id"])
                self.events.append(await self._receive())

    async def stats(
        self, expression: str = "window.sferumCallStats", context: int | None = None
    ) -> dict[str, Any]:
        raw = await self.evaluate(f"JSON.stringify({expression} || null)", context)
        stats = json.loads(raw) if isinstance(raw, str) else None
        return stats if isinstance(stats, dict) else {}  # not loaded yet

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, 10)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def wait_stats(
    browser: Browser,
    ok: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 30,
    expression: str = "window.sferumCallStats",
    context: int | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        stats = await browser.stats(expression, context)
        if ok(stats):
            return stats
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what}: {stats}")


@needs_chromium
@pytest.mark.integration
@pytest.mark.alone  # 10 frames decoded in 3 s
@pytest.mark.timeout(120)
async def test_a_lesson_between_two_chromiums(server: TestServer, tmp_path: Path) -> None:
    """The teacher's camera reaches the pupil; the teacher allows the pupil's camera with the
    page's own button, and the pupil's page publishes it on the same connection (both browsers
    then publish and receive); a raised hand shows on the teacher's page."""
    now = int(time.time())
    teacher_grant = Grant.publisher(CAMERA, MICROPHONE, room_admin=True)
    teacher_jwt = tokens.issue(teacher_grant, ROOM, "teacher", SECRET, now)
    pupil_jwt = tokens.issue(Grant.publisher(MICROPHONE), ROOM, "pupil", SECRET, now)
    base = str(server.make_url("/call"))
    teacher = Browser(tmp_path / "teacher", f"{base}#jwt={teacher_jwt}", fake_devices=True)
    pupil = Browser(tmp_path / "pupil", f"{base}#jwt={pupil_jwt}", fake_devices=True)
    async with aiohttp.ClientSession() as session:
        try:
            await teacher.connect(session)
            await pupil.connect(session)
            sending = await wait_stats(
                teacher, lambda s: s.get("framesEncoded", 0) > 10 and s.get("bytesSent", 0) > 0,
                "the teacher's camera is not being sent",
            )  # fmt: skip
            assert sending["state"] == "joined", sending
            first = await wait_stats(
                pupil, lambda s: s.get("framesDecoded", 0) > 0, "the pupil decodes no video"
            )
            assert first["remoteVideos"] == 1, first
            assert first["framesEncoded"] == 0  # a microphone only, until the teacher allows
            await asyncio.sleep(3)
            later = await pupil.stats()
            assert later["framesDecoded"] > first["framesDecoded"] + 10, (first, later)

            await pupil.evaluate("document.getElementById('hand').click()")
            pupil_row = "document.querySelector('#people li[data-identity=\"pupil\"]')"
            await wait_stats(
                teacher, lambda s: "✋" in s.get("row", ""), "no hand on the teacher's page",
                expression=f"{{row: {pupil_row} && {pupil_row}.textContent}}",
            )  # fmt: skip
            allow = f"{pupil_row}.querySelector('button[data-action=\"allow_camera\"]').click()"
            await teacher.evaluate(allow)
            await wait_stats(
                pupil, lambda s: s.get("framesEncoded", 0) > 10, "the pupil's camera is not sent"
            )
            both = await wait_stats(
                teacher, lambda s: s.get("framesDecoded", 0) > 10, "the teacher decodes no pupil"
            )
            assert both["remoteVideos"] == 1, both
            for browser in (teacher, pupil):
                assert "lastError" not in await browser.stats()
        finally:
            await teacher.close()
            await pupil.close()


HOST_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>host</title></head>
<body><iframe id="widget" src="%(src)s" allow="camera; microphone"></iframe><script>
"use strict";
// The Matrix client's side of the widget API: capabilities, then an OpenID token.
const frame = document.getElementById("widget");
const widgetOrigin = new URL(frame.src).origin;
window.hostLog = [];
window.addEventListener("message", (event) => {
  const msg = event.data;
  window.hostLog.push(msg.action + (msg.response ? ":reply" : ""));
  if (msg.api === "fromWidget" && msg.action === "get_openid") {
    frame.contentWindow.postMessage(Object.assign({}, msg, {response: Object.assign(
      {state: "allowed"}, %(openid)s)}), widgetOrigin);
  }
});
frame.addEventListener("load", () => frame.contentWindow.postMessage({api: "toWidget",
  widgetId: "w1", requestId: "host-1", action: "capabilities", data: {}}, widgetOrigin));
</script></body></html>
"""


def widget_host(
    sfu_url: str, room_id: str, user_id: str, openid: dict[str, Any]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler serving a Matrix client's stand-in that embeds the call page as a widget."""

    async def host(request: web.Request) -> web.Response:
        src = f"{sfu_url}/call?" + urllib.parse.urlencode(
            {"room": room_id, "user": user_id, "device": "DEV", "widgetId": "w1",
             "parentUrl": str(request.url)}
        )  # fmt: skip
        page = HOST_PAGE % {"src": html.escape(src), "openid": json.dumps(openid)}
        return web.Response(text=page, content_type="text/html")

    return host


WIDGET_STATS = "document.getElementById('widget').contentWindow.sferumCallStats"


@needs_chromium
@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_widget_mode_asks_get_token_with_the_openid_token(tmp_path: Path) -> None:
    """In a widget, the page gets the token through `get_openid` and `/get_token`.

    The token names another homeserver, so `/get_token` refuses it (401) without asking any
    Synapse: "denied" rather than "error" shows that the request was well formed.
    """
    config = offline_config(SECRET)
    app = SfuServer(config, SYSTEM_CLOCK).app()

    foreign = {"access_token": "tok", "matrix_server_name": "elsewhere.test", "expires_in": 3600}
    app.router.add_get("/host", widget_host("", "!lesson:school.test", "@t:school.test", foreign))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    browser = Browser(tmp_path / "host", str(server.make_url("/host")), fake_devices=False)
    try:
        async with aiohttp.ClientSession() as session:
            await browser.connect(session)
            stats = await wait_stats(
                browser,
                lambda s: s.get("state") not in (None, "loading", "openid"),
                "the widget never settled",
                expression=WIDGET_STATS,
            )
            assert stats["state"] == "denied", stats
            log = await browser.evaluate("window.hostLog.join(',')")
            assert "capabilities:reply" in log and "get_openid" in log, log
    finally:
        await browser.close()
        await server.close()
