"""Sending the shared protocols' requests with aiohttp: answers as plain values, failures as
`Unreachable`, and never a redirect followed (it would carry the secret elsewhere)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sferum_shared.http import Request, Unreachable, json_request
from sferum_shared.web import send


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {"auth": request.headers.get("Authorization"), "body": body.decode()},
        headers={"X-Total-Count": "3"},
    )


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("http://elsewhere.invalid/")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response()


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/slow", slow)
    async with TestServer(app) as test_server:
        yield test_server


async def test_an_answer_with_its_headers_in_lower_case(server: TestServer) -> None:
    request = json_request("POST", str(server.make_url("/echo")), {"a": 1}, {"Authorization": "x"})
    async with aiohttp.ClientSession() as http:
        response = await send(http, request)
    assert response.status == 200
    assert response.json() == {"auth": "x", "body": '{"a": 1}'}
    assert response.headers["x-total-count"] == "3"
    assert response.url == request.url


async def test_a_redirect_is_answered_not_followed(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        response = await send(http, Request("GET", str(server.make_url("/redirect"))))
    assert response.status == 302


async def test_no_answer_is_unreachable(server: TestServer) -> None:
    timeout = aiohttp.ClientTimeout(total=0.2)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        with pytest.raises(Unreachable) as slow_answer:
            await send(http, Request("GET", str(server.make_url("/slow"))))
        assert slow_answer.value.timed_out
        with pytest.raises(Unreachable) as refused:
            await send(http, Request("GET", "http://127.0.0.1:1/"))
        assert not refused.value.timed_out
