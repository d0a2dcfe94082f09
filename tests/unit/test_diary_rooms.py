"""The bridge finds provisioned rooms through the module's admin API (`rooms`), not aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridges.diary.matrix import MatrixRefused, MatrixUnavailable
from bridges.diary.rooms import RoomDirectory

SECRET = "s" * 32


class Module:
    """The admin API's `rooms` endpoint, with a log of what it was asked."""

    def __init__(self) -> None:
        self.rooms = {"diary-p-5a-1": "!diary:s", "class-5a": "!class:s"}
        self.asked: list[list[str]] = []
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SECRET}":
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        aliases = (await request.json())["aliases"]
        self.asked.append(aliases)
        if self.status != 200:
            return web.json_response({"errcode": "M_UNKNOWN"}, status=self.status)
        found = {a: self.rooms[a] for a in aliases if a in self.rooms}
        return web.json_response({"rooms": found})


@pytest.fixture
async def module() -> AsyncIterator[tuple[Module, str]]:
    fake = Module()
    app = web.Application()
    app.router.add_post("/admin/rooms", fake.handle)
    server = TestServer(app)
    await server.start_server()
    try:
        yield fake, str(server.make_url("/admin"))
    finally:
        await server.close()


async def test_rooms_are_asked_once_and_missing_ones_again(module: tuple[Module, str]) -> None:
    fake, url = module
    rooms = RoomDirectory(url, SECRET)
    assert await rooms.resolve("diary-p-5a-1") == "!diary:s"
    assert await rooms.resolve("diary-p-5a-1") == "!diary:s"
    assert await rooms.resolve("diary-p-5a-2") is None
    assert await rooms.resolve("diary-p-5a-2") is None  # not made yet: asked again later
    assert fake.asked == [["diary-p-5a-1"], ["diary-p-5a-2"], ["diary-p-5a-2"]]


@pytest.mark.parametrize(
    ("status", "secret", "error"),
    [(503, SECRET, MatrixUnavailable), (200, "wrong", MatrixRefused)],
)
async def test_failures_say_whether_to_try_again(
    module: tuple[Module, str], status: int, secret: str, error: Any
) -> None:
    fake, url = module
    fake.status = status
    with pytest.raises(error):
        await RoomDirectory(url, secret).resolve("class-5a")


async def test_an_unreachable_module_is_unavailable() -> None:
    with pytest.raises(MatrixUnavailable):
        await RoomDirectory("http://127.0.0.1:9/admin", SECRET, timeout=2).resolve("class-5a")
