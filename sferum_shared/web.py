"""What the two aiohttp services (the diary bridge and the SFU) do alike: serve a widget page's
files, and send the shared protocols' requests."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from sferum_shared.http import Request, Response, Unreachable
from sferum_shared.widgets import ASSET_HEADERS, Asset


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
