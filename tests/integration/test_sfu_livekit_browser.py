"""The SFU with LiveKit's JS SDK (`livekit-client`, the library inside Element Call) in headless
Chromium: two browsers with Chromium's fake camera and microphone publish and decode each other.

The SDK comes from the npm registry at the version `tests/js/package-lock.json` pins, bundled
for a plain page (`tests/js/page.html`) with esbuild; the page uses the SDK's default options,
so it reaches the SFU through the `/rtc/v1` -> `/rtc` fallback. Chromium is driven over the
DevTools protocol (`test_sfu_page.Browser`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sferum_shared import SYSTEM_CLOCK
from sfu import tokens
from sfu.server import SfuServer
from tests.integration.test_sfu_livekit import TEACHER
from tests.integration.test_sfu_page import Browser, needs_chromium
from tests.integration.test_sfu_signalling import ROOM, SECRET, offline_config

# Chromium lowers its video below the 640 wide the checks wait for when its CPU is busy.
pytestmark = [pytest.mark.integration, pytest.mark.alone, needs_chromium]

JS = Path(__file__).parents[1] / "js"
NPM = shutil.which("npm")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test page and LiveKit's SDK bundled beside it, in a folder of their own."""
    if NPM is None:
        pytest.fail("npm is missing: scripts/test installs Node.js with it")
    if not (JS / "node_modules" / "livekit-client").is_dir():
        subprocess.run([NPM, "ci", "--no-audit", "--no-fund"], cwd=JS, check=True)
    out = tmp_path_factory.mktemp("livekit-page")
    subprocess.run(
        [
            str(JS / "node_modules" / ".bin" / "esbuild"),
            "entry.js",
            "--bundle",
            "--format=iife",
            "--global-name=LivekitClient",
            f"--outfile={out / 'livekit-client.js'}",
            "--log-level=warning",
        ],
        cwd=JS,
        check=True,
    )
    shutil.copy(JS / "page.html", out / "page.html")
    # E2EE runs in a worker of the SDK's own, prebuilt in its package.
    worker = JS / "node_modules" / "livekit-client" / "dist" / "livekit-client.e2ee.worker.js"
    shutil.copy(worker, out / worker.name)
    return out


@pytest.fixture
async def servers(bundle: Path) -> AsyncIterator[tuple[TestServer, TestServer]]:
    """The SFU, and the page on an origin of its own (as Element Call is, to the SFU)."""
    sfu = TestServer(SfuServer(offline_config(SECRET), SYSTEM_CLOCK).app())
    app = web.Application()
    app.router.add_static("/", bundle)
    page = TestServer(app)
    await sfu.start_server()
    await page.start_server()
    yield sfu, page
    await page.close()
    await sfu.close()


def page_url(page: TestServer, sfu: TestServer, identity: str, e2ee_key: str = "") -> str:
    jwt = tokens.issue(TEACHER, ROOM, identity, SECRET, int(time.time()))
    fragment = f"url=ws://{sfu.host}:{sfu.port}&token={jwt}"
    if e2ee_key:
        fragment += f"&e2ee={e2ee_key}"
    return f"{page.make_url('/page.html')}#{fragment}"


async def lk_stats(browser: Browser) -> dict[str, Any]:
    answer = await browser.command(
        "Runtime.evaluate",
        expression="window.lkStats ? window.lkStats().then(JSON.stringify) : null",
        awaitPromise=True,
        returnByValue=True,
    )
    raw = answer["result"].get("value")
    return json.loads(raw) if isinstance(raw, str) else {}


async def decoding(
    browser: Browser, timeout: float = 60, *, encoding: bool = False
) -> dict[str, Any]:
    """The page's statistics once it decodes the other's video at 640 wide or more (a
    1280x720 camera: not the quarter-size layer a lost simulcast answer would leave), and,
    with `encoding`, has sent 30 frames of its own (a loaded machine starts an encoder late)."""
    seen: dict[str, Any] = {}

    def done() -> bool:
        decoded = seen.get("framesDecoded", 0) > 30 and seen.get("frameWidth", 0) >= 640
        return decoded and (not encoding or seen.get("framesEncoded", 0) > 30)

    async with asyncio.timeout(timeout):
        while not done():
            assert not seen.get("error"), seen
            await asyncio.sleep(0.5)
            seen = await lk_stats(browser)
    return seen


@pytest.mark.timeout(150)
async def test_two_browsers_publish_and_decode_each_other(
    servers: tuple[TestServer, TestServer], tmp_path: Path
) -> None:
    sfu, page = servers
    browsers = [
        Browser(tmp_path / name, page_url(page, sfu, f"@{name}:school.test:WEB"), True)
        for name in ("teacher", "guardian")
    ]
    async with aiohttp.ClientSession() as session:
        try:
            for browser in browsers:
                await browser.connect(session)
            for browser in browsers:
                seen = await decoding(browser, encoding=True)
                assert seen["serverVersion"] == "1.9.0" and seen["sid"].startswith("PA_"), seen
                assert seen["remoteVideos"] == 1, seen
        finally:
            for browser in browsers:
                await browser.close()


@pytest.mark.timeout(150)
async def test_end_to_end_encryption_with_the_same_key_and_with_another(
    servers: tuple[TestServer, TestServer], tmp_path: Path
) -> None:
    """Element Call's E2EE through the SFU: frames pass byte for byte and `encryption` is passed
    on, so two browsers with the same key decode each other; a third with another key receives
    the same packets and decodes nothing."""
    sfu, page = servers
    keys = {"teacher": "key-of-the-lesson", "guardian": "key-of-the-lesson", "other": "not-it"}
    browsers = {
        name: Browser(tmp_path / name, page_url(page, sfu, f"@{name}:school.test:WEB", key), True)
        for name, key in keys.items()
    }
    async with aiohttp.ClientSession() as session:
        try:
            for browser in browsers.values():
                await browser.connect(session)
            for name in ("teacher", "guardian"):
                await decoding(browsers[name])
            outsider = await lk_stats(browsers["other"])
            async with asyncio.timeout(30):
                while outsider.get("packetsReceived", 0) < 300:
                    await asyncio.sleep(0.5)
                    outsider = await lk_stats(browsers["other"])
            assert outsider["remoteVideos"] == 2 and outsider["framesDecoded"] == 0, outsider
        finally:
            for browser in browsers.values():
                await browser.close()
