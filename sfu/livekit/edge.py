"""An edge's link to its origin, in LiveKit's protocol: the broadcast reaches the apps' viewers
through the edges, as it reaches our call page's (`sfu.edge`).

A broadcast's viewers are spread over edge processes (`sfu.authservice.sfu_url_for`). When the
first viewer of a room joins an edge, the edge joins that room at the origin as one hidden,
watch-only participant (a token it signs itself: edges share the deployment's JWT secret),
and mirrors it for its own viewers:

* the origin's participants (its JoinResponse, then every ParticipantUpdate) are the edge
  room's remote participants, passed on to the edge's viewers as they come;
* the origin's offers of tracks are answered by the edge's router
  (:meth:`sfu.livekit.media.TrackRouter.answer_origin`): each track keeps its publisher's and
  its own ID, and the edge's viewers get it in their next offer;
* who speaks (SpeakersChanged) is passed on as the origin says it.

The origin sends each packet once per edge, however many viewers the edge has. If the origin
goes away, the remote participants leave the edge's viewers, and the link comes back with
the same waits as `sfu.edge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from livekit.protocol import models, rtc

from sferum_shared import Clock
from sfu.edge import keep_linked
from sfu.livekit import wire
from sfu.livekit.media import ORIGIN
from sfu.livekit.participants import Room, ice_candidate

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 256 * 1024


def rtc_url(origin_url: str) -> str:
    """The origin's `/rtc`, from the `origin_url` of an edge's config (its `/ws`)."""
    parts = urlsplit(origin_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "/rtc", "", ""))


class OriginLink:
    """One room's subscription at the origin; :meth:`run` keeps it up until cancelled."""

    def __init__(
        self,
        url: str,
        room: Room,
        token: Callable[[], str],
        tell: Callable[[bytes], Awaitable[None]],
        on_tracks: Callable[[], Awaitable[None]],
        clock: Clock,
    ) -> None:
        self._url = url
        self._clock = clock
        self._room = room
        self._token = token
        self._tell = tell  # a frame for every viewer of the edge's room
        self._on_tracks = on_tracks  # new tracks to offer to them
        self.connected = asyncio.Event()

    async def run(self) -> None:
        await keep_linked(self._session, self._lost, f"origin {self._url}, {self._room.name}")

    async def _session(self, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(
            self._url, params={"access_token": self._token()}, max_msg_size=MAX_FRAME_BYTES
        ) as ws:
            pinger = asyncio.create_task(self._ping(ws))
            try:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        await self._handle(ws, wire.parse_response(msg.data))
            finally:
                pinger.cancel()

    async def _handle(
        self, ws: aiohttp.ClientWebSocketResponse, response: rtc.SignalResponse
    ) -> None:
        kind = response.WhichOneof("message")
        if kind == "join":
            await self._update(response.join.other_participants)
            self.connected.set()
        elif kind == "update":
            await self._update(response.update.participants)
        elif kind == "offer":
            sdp = await self._room.router.answer_origin(response.offer.sdp)
            await ws.send_bytes(wire.client_answer(sdp, response.offer.id))
            await self._on_tracks()
        elif kind == "trickle":
            candidate = ice_candidate(response.trickle.candidateInit)
            if candidate is not None:
                await self._room.router.trickle(ORIGIN, False, candidate)
        elif kind == "speakers_changed":
            await self._tell(response.SerializeToString())
        elif kind == "leave":
            raise ConnectionResetError(f"the origin ended the link: {response.leave.reason}")

    async def _update(self, infos: Sequence[models.ParticipantInfo]) -> None:
        """Participants of the origin, for the edge's viewers; the gone ones' tracks end."""
        if not infos:
            return
        for info in infos:
            if info.state == models.ParticipantInfo.DISCONNECTED:
                self._room.remote.pop(info.sid, None)
                await self._room.router.leave(info.sid)
            else:
                self._room.remote[info.sid] = info
        await self._tell(wire.participants_update(infos))

    async def _lost(self) -> None:
        """The origin is gone: so are its participants, for the edge's viewers."""
        self.connected.clear()
        gone = list(self._room.remote.values())
        for info in gone:
            info.state = models.ParticipantInfo.DISCONNECTED
        with contextlib.suppress(Exception):
            await self._update(gone)
        await self._room.router.leave(ORIGIN)

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            await asyncio.sleep(wire.PING_INTERVAL_SECONDS)
            await ws.send_bytes(wire.ping_request(self._clock.ms()))
