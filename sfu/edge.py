"""An edge SFU's link to its origin: it subscribes there like any client (issue 5, point 7).

A broadcast has one publisher and hundreds of viewers, more than one Python process can serve
(about 0.01 core per viewer, `../shared/reference/sfu.md`). So viewers are spread over edge
processes: an edge (`origin_url` in its config) joins each room its viewers are in at the
origin, as one hidden participant with a watch-only token it signs itself (edges share the
deployment's JWT secret), subscribes, and answers the origin's offers with
:meth:`sfu.forwarding.MediaRouter.relay`, so the origin's tracks become the edge room's
sources and the edge forwards them to its own viewers, packet by packet like the origin.
The origin sends each packet once per edge however many viewers the edge has.

Renegotiation needs nothing special: when the origin gets a new publisher it sends the edge
a new offer, and the edge, once it has answered, offers the new track to its viewers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiortc import RTCSessionDescription

from sfu import tokens
from sfu.forwarding import MediaRouter
from sfu.grants import Grant
from sfu.signalling import MAX_MESSAGE_BYTES, encode_message

logger = logging.getLogger(__name__)

#: The upstream's participant name in the edge's router (never a client identity: those are
#: unpadded base64 hashes or `@user:server:DEVICE`).
UPSTREAM = "origin"
#: Waits between reconnects to an origin that is down or refused: a restart takes seconds.
RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)


def relay_token(room: str, edge_url: str, secret: str, now: int, issuer: str) -> str:
    """The edge's token at the origin: subscribe only, hidden from the participants list."""
    grant = Grant(can_publish=False, hidden=True)
    return tokens.issue(grant, room, f"edge:{edge_url}", secret, now, issuer=issuer)


async def keep_linked(
    link: Callable[[aiohttp.ClientSession], Awaitable[None]],
    lost: Callable[[], Awaitable[None]],
    what: str,
) -> None:
    """Keep an edge's link to its origin up until cancelled: `link` runs until the socket
    closes or fails, `lost` cleans up after it, and it comes back after a wait that grows
    while the origin stays down."""
    attempt = 0
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                await link(session)
                attempt = 0  # a clean close: the origin restarted, say; come back at once
            except Exception as e:  # down, refused, a bad SDP or frame: all mean "try again"
                logger.warning("sfu edge: %s: %r", what, e)
            await lost()
            await asyncio.sleep(RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)])
            attempt += 1


class Upstream:
    """One room's subscription at the origin; :meth:`run` keeps it up until cancelled."""

    def __init__(
        self,
        origin_url: str,
        room: str,
        token: Callable[[], str],
        router: MediaRouter,
        on_tracks: Callable[[], Awaitable[None]],
    ) -> None:
        self._origin_url = origin_url
        self._room = room
        self._token = token
        self._router = router
        self._on_tracks = on_tracks
        self.connected = asyncio.Event()

    async def run(self) -> None:
        await keep_linked(self._session, self._lost, f"origin {self._origin_url}, {self._room}")

    async def _lost(self) -> None:
        self.connected.clear()
        # The origin's tracks are gone with the socket; viewers' outlets go idle.
        await self._router.leave(UPSTREAM)

    async def _session(self, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(
            self._origin_url, max_msg_size=MAX_MESSAGE_BYTES, heartbeat=30
        ) as ws:
            await ws.send_str(encode_message("join", room=self._room, token=self._token()))
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                kind = data.get("type")
                if kind == "joined":
                    await ws.send_str(encode_message("subscribe"))
                elif kind == "offer":
                    offer = RTCSessionDescription(str(data["sdp"]), "offer")
                    answer = await self._router.relay(UPSTREAM, offer)
                    await ws.send_str(encode_message("answer", sdp=answer.sdp))
                    self.connected.set()
                    await self._on_tracks()
                elif kind in ("error", "removed"):
                    raise ValueError(f"origin refused: {data.get('message')}")
