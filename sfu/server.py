"""The SFU process: the auth routes, `/health`, and WebSocket signalling at `/ws`, in one app.

One process serves both halves so that the JWT secret never leaves it and a deployment has one
more service, not two. A socket's life:

1. the first message is ``join {room, token}``; the token is verified (signature, time, room)
   before anything else is read, and a refusal closes the socket;
2. ``publish {sdp}`` hands the offer to the room's :class:`MediaRouter` and answers, but only
   for the media kinds the token's grant allows (a viewer's token publishes nothing);
3. ``subscribe`` makes the SFU offer the room's current tracks; the client sends ``answer``;
4. ``mute`` and ``leave`` (or the socket closing) update everyone's ``participants`` list.

Rooms are the hashed SFU room names of :mod:`sfu.tokens`, one router each, dropped when the
last participant goes. The pure parts (which kinds an offer carries, which a grant allows, the
participants list) are plain functions so they are tested without sockets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import attrs
from aiohttp import WSMsgType, web
from aiortc import RTCSessionDescription

from sfu import tokens
from sfu.authservice import AuthService
from sfu.config import SfuConfig
from sfu.forwarding import MediaRouter
from sfu.grants import CAMERA, MICROPHONE, SCREEN_SHARE, Grant
from sfu.signalling import (
    MAX_MESSAGE_BYTES,
    Answer,
    Join,
    Leave,
    Mute,
    Publish,
    SignallingError,
    Subscribe,
    authenticate,
    parse_client_message,
    server_message,
)

logger = logging.getLogger(__name__)

#: A socket that has not sent a valid join by then is closed: it holds no room yet.
JOIN_TIMEOUT_SECONDS = 10.0
#: WebSocket close code for a refused join (4000-4999 are the application's own).
CLOSE_REFUSED = 4401


def offered_kinds(sdp: str) -> frozenset[str]:
    """The media kinds (`audio`, `video`, ...) of an SDP's m-lines that are not disabled."""
    kinds = set()
    for line in sdp.splitlines():
        if line.startswith("m="):
            parts = line[2:].split()
            if len(parts) >= 2 and parts[1] != "0":  # port 0: a rejected m-line
                kinds.add(parts[0])
    return frozenset(kinds)


def allowed_kinds(grant: Grant) -> frozenset[str]:
    """The media kinds a grant lets its holder publish.

    LiveKit reads an empty `canPublishSources` as "any source"; our grants always list them
    when publishing, so the empty case only matters for tokens minted by hand.
    """
    if not grant.can_publish:
        return frozenset()
    sources = set(grant.can_publish_sources) or {CAMERA, MICROPHONE, SCREEN_SHARE}
    kinds = set()
    if MICROPHONE in sources:
        kinds.add("audio")
    if sources & {CAMERA, SCREEN_SHARE}:
        kinds.add("video")
    return frozenset(kinds)


def publish_refusal(grant: Grant, sdp: str) -> str | None:
    """Why this grant may not publish this offer, or None if it may."""
    if not grant.can_publish:
        return "publish refused: the token does not allow publishing"
    extra = offered_kinds(sdp) - allowed_kinds(grant)
    if extra:
        return f"publish refused: the token does not allow publishing {', '.join(sorted(extra))}"
    return None


@attrs.define(eq=False)
class Participant:
    identity: str
    grant: Grant
    ws: web.WebSocketResponse
    muted: set[str] = attrs.field(factory=set)

    def describe(self, publishing: bool) -> dict[str, Any]:
        return {"identity": self.identity, "publishing": publishing, "muted": sorted(self.muted)}


@attrs.define(eq=False)
class Room:
    name: str
    router: MediaRouter = attrs.field(factory=MediaRouter)
    participants: dict[str, Participant] = attrs.field(factory=dict)

    def listing(self) -> list[dict[str, Any]]:
        """What everyone is told: hidden participants (none today, MSC4195) are left out."""
        return [
            p.describe(self.router.is_publishing(p.identity))
            for p in self.participants.values()
            if not p.grant.hidden
        ]


class SfuServer:
    """Rooms, their routers and sockets; :meth:`app` is the whole HTTP side of the SFU."""

    def __init__(self, config: SfuConfig, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock
        self._rooms: dict[str, Room] = {}
        self._auth = AuthService(config, clock=clock)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
        self._auth.add_routes(app)
        app.router.add_get("/health", self._health)
        app.router.add_get("/ws", self._websocket)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "rooms": len(self._rooms)})

    async def _shutdown(self, app: web.Application) -> None:
        for room in list(self._rooms.values()):
            for participant in list(room.participants.values()):
                await participant.ws.close()
            await room.router.close()
        self._rooms.clear()

    # -- one socket -----------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=30)
        await ws.prepare(request)
        joined = await self._join(ws)
        if joined is None:
            return ws
        room, participant = joined
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if not await self._handle(room, participant, msg.data):
                    break
        finally:
            await self._leave(room, participant)
            await ws.close()
        return ws

    async def _join(self, ws: web.WebSocketResponse) -> tuple[Room, Participant] | None:
        claims: dict[str, Any] = {}

        def verify(token: str, room: str) -> str:
            claims.update(tokens.verify(token, self._config.jwt_secret, room, int(self._clock())))
            return str(claims["sub"])

        try:
            msg = await ws.receive(timeout=JOIN_TIMEOUT_SECONDS)
            if msg.type != WSMsgType.TEXT:
                raise SignallingError("the first message must be a 'join' text message")
            room_name, identity = authenticate(msg.data, verify)
        except (SignallingError, TimeoutError) as e:
            reason = str(e) or "no join in time"
            logger.info("sfu: refused a socket: %s", reason)
            await ws.send_str(server_message("error", message=reason))
            await ws.close(code=CLOSE_REFUSED, message=b"join refused")
            return None
        existing = self._rooms.get(room_name)
        previous = existing.participants.get(identity) if existing else None
        if existing is not None and previous is not None:
            # The same membership reconnecting (a dropped network): the new socket wins.
            await self._leave(existing, previous, notify=False)
            await previous.ws.close()
        room = self._rooms.get(room_name)
        if room is None:
            room = self._rooms[room_name] = Room(room_name)
        participant = Participant(identity, tokens.grant_of(claims), ws)
        room.participants[identity] = participant
        logger.info("sfu: %s joined %s", identity, room_name)
        await ws.send_str(server_message("joined", participant=identity))
        await self._broadcast(room)
        return room, participant

    async def _handle(self, room: Room, participant: Participant, raw: str) -> bool:
        """Act on one message; False when the participant left."""
        try:
            message = parse_client_message(raw)
            if isinstance(message, Publish):
                await self._publish(room, participant, message.sdp)
            elif isinstance(message, Subscribe):
                await self._subscribe(room, participant)
            elif isinstance(message, Answer):
                await room.router.accept_answer(
                    participant.identity, RTCSessionDescription(message.sdp, "answer")
                )
            elif isinstance(message, Mute):
                if message.muted:
                    participant.muted.add(message.kind)
                else:
                    participant.muted.discard(message.kind)
                await self._broadcast(room)
            elif isinstance(message, Leave):
                return False
            elif isinstance(message, Join):
                raise SignallingError("already joined")
        except SignallingError as e:
            await participant.ws.send_str(server_message("error", message=str(e)))
        except KeyError:
            await participant.ws.send_str(server_message("error", message="answer without offer"))
        except Exception as e:  # a bad SDP: aiortc raises ValueError and friends
            logger.warning("sfu: %s in %s: %r", participant.identity, room.name, e)
            await participant.ws.send_str(server_message("error", message=f"failed: {e}"))
        return True

    async def _publish(self, room: Room, participant: Participant, sdp: str) -> None:
        refusal = publish_refusal(participant.grant, sdp)
        if refusal is not None:
            raise SignallingError(refusal)
        if room.router.is_publishing(participant.identity):
            raise SignallingError("publish refused: already publishing")
        answer = await room.router.publish(
            participant.identity, RTCSessionDescription(sdp, "offer")
        )
        await participant.ws.send_str(server_message("answer", sdp=answer.sdp))
        await self._broadcast(room)

    async def _subscribe(self, room: Room, participant: Participant) -> None:
        if not participant.grant.can_subscribe:
            raise SignallingError("subscribe refused: the token does not allow subscribing")
        # Tracks are fixed per subscription: a client re-subscribes when publishers change.
        await room.router.unsubscribe(participant.identity)
        offer = await room.router.subscribe(participant.identity)
        await participant.ws.send_str(server_message("offer", sdp=offer.sdp))

    async def _leave(self, room: Room, participant: Participant, notify: bool = True) -> None:
        if room.participants.get(participant.identity) is not participant:
            return  # already replaced by a reconnect
        del room.participants[participant.identity]
        await room.router.leave(participant.identity)
        logger.info("sfu: %s left %s", participant.identity, room.name)
        if not room.participants:
            await room.router.close()
            if self._rooms.get(room.name) is room:
                del self._rooms[room.name]
        elif notify:
            await self._broadcast(room)

    async def _broadcast(self, room: Room) -> None:
        text = server_message("participants", participants=room.listing())
        sockets = [p.ws for p in room.participants.values() if not p.ws.closed]
        await asyncio.gather(*(ws.send_str(text) for ws in sockets), return_exceptions=True)
