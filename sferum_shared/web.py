"""What the two aiohttp services (the diary bridge and the SFU) do alike: answer with
Matrix-style errors, read JSON bodies, serve a widget page's files, and send the shared
protocols' requests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

from sferum_shared.http import Request, Response, Unreachable
from sferum_shared.vocabulary import Key
from sferum_shared.widgets import ASSET_HEADERS, Asset


class ApiError(Exception):
    """A Matrix-style error answer: `{"errcode", "error"[, "ru.sferum.reason"]}`."""

    def __init__(self, status: int, errcode: str, message: str, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.errcode = errcode
        self.message = message
        self.reason = reason

    def to_json(self) -> dict[str, str]:
        body = {"errcode": self.errcode, "error": self.message}
        if self.reason:
            body[Key.REASON] = self.reason
        return body

    def response(self, headers: Mapping[str, str]) -> web.Response:
        return web.json_response(self.to_json(), status=self.status, headers=headers)


async def read_json_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object, read no further than `max_bytes`; ApiError otherwise."""
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ApiError(413, "M_TOO_LARGE", "The request body is too large")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(400, "M_NOT_JSON", "The request body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "M_BAD_JSON", "The request body must be a JSON object")
    return body


def serve_asset(assets: dict[str, Asset], request: web.Request) -> web.Response:
    """`GET …/static/{name}` for a page's fixed table of assets (404 for anything else)."""
    asset = assets.get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound()
    return web.Response(
        body=asset.path.read_bytes(),
        content_type=asset.content_type,
        charset="utf-8",
        headers=ASSET_HEADERS,
    )


async def send(session: aiohttp.ClientSession, request: Request) -> Response:
    """Sends a protocol's request (`sferum_shared.http`); Unreachable if no answer came."""
    where = f"{request.method} {request.url.split('?')[0]}"
    try:
        async with session.request(
            request.method,
            request.url,
            headers=dict(request.headers),
            data=request.body or None,
            allow_redirects=False,  # a redirect would carry the secret elsewhere
        ) as answer:
            headers = {name.lower(): value for name, value in answer.headers.items()}
            return Response(answer.status, await answer.read(), headers, request.url)
    except TimeoutError as e:
        raise Unreachable(f"{where}: no answer in time", timed_out=True) from e
    except aiohttp.ClientError as e:
        raise Unreachable(f"{where} failed: {e}") from e
