"""The SFU process: the auth routes, `/health`, and WebSocket signalling at `/ws`, in one app.

One process serves both halves so that the JWT secret never leaves it and a deployment has one
more service, not two. A socket's life:

1. the first message is ``join {room, token}``; the token is verified (signature, time, room)
   before anything else is read, and a refusal closes the socket;
2. ``publish {sdp}`` hands the offer to the room's :class:`MediaRouter` and answers, but only
   for the media kinds the token's grant allows (a viewer's token publishes nothing);
3. ``subscribe`` makes the SFU offer the room's current tracks; the client sends ``answer``;
4. ``mute`` and ``leave`` (or the socket closing) update everyone's ``participants`` list;
5. every ``membership_check_seconds`` the directory is asked again whether the session's Matrix
   user may still be in the call (:mod:`sfu.membership`); one who left or was banned hears
   ``removed {reason}`` and the socket closes with code 4403 and the refusal code as reason.

``GET /metrics`` serves Prometheus metrics (:mod:`sfu.metrics`).

Rooms are the hashed SFU room names of :mod:`sfu.tokens`, one router each, dropped when the
last participant goes. The pure parts (which kinds an offer carries, which a grant allows, the
participants list) are plain functions so they are tested without sockets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
from aiohttp import WSMsgType, web
from aiortc import RTCSessionDescription

from sfu import tokens
from sfu.authservice import ApiError, AuthService
from sfu.config import SfuConfig
from sfu.edge import Upstream, relay_token
from sfu.forwarding import MediaRouter
from sfu.grants import CAMERA, MICROPHONE, SCREEN_SHARE, Facts, Grant, Refusal
from sfu.membership import CLOSE_REMOVED, Session, close_reason, session_of, still_allowed
from sfu.metrics import CONTENT_TYPE, SfuMetrics, Snapshot
from sfu.page import page_routes
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
    encode_message,
    parse_client_message,
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
    session: Session | None = None  # None: a token without our private claim, not watched
    muted: set[str] = attrs.field(factory=set)

    def describe(self, publishing: bool) -> dict[str, Any]:
        return {"identity": self.identity, "publishing": publishing, "muted": sorted(self.muted)}


@attrs.define(eq=False)
class Room:
    name: str
    router: MediaRouter = attrs.field(factory=MediaRouter)
    participants: dict[str, Participant] = attrs.field(factory=dict)
    upstream: asyncio.Task[None] | None = None  # an edge's link to the origin (`sfu.edge`)

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
        self._metrics = SfuMetrics(self._snapshot)
        # Totals of rooms already closed, so the packet counters never go down.
        self._retired = Snapshot()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
        self._auth.add_routes(app)  # first: its HTTP session outlives the background tasks
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/ws", self._websocket)
        app.add_routes(page_routes())  # the browser page (a widget in lesson and news rooms)
        app.on_shutdown.append(self._shutdown)
        app.cleanup_ctx.append(self._background)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "rooms": len(self._rooms)})

    async def _metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    def _snapshot(self) -> Snapshot:
        routers = [room.router for room in self._rooms.values()]
        return Snapshot(
            rooms=len(self._rooms),
            participants=sum(len(room.participants) for room in self._rooms.values()),
            streams=sum(r.stream_count for r in routers),
            packets_in=self._retired.packets_in + sum(r.received_packets for r in routers),
            packets_out=self._retired.packets_out + sum(r.forwarded_packets for r in routers),
            forward_seconds=self._retired.forward_seconds
            + sum(r.forward_seconds for r in routers),
        )

    def _retire(self, router: MediaRouter) -> None:
        self._retired = attrs.evolve(
            self._retired,
            packets_in=self._retired.packets_in + router.received_packets,
            packets_out=self._retired.packets_out + router.forwarded_packets,
            forward_seconds=self._retired.forward_seconds + router.forward_seconds,
        )

    async def _background(self, app: web.Application) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(self._watch_memberships()),
            asyncio.create_task(self._metrics.measure_loop_lag()),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- membership (issue 5 point 8) -----------------------------------------------------------

    async def _watch_memberships(self) -> None:
        while True:
            await asyncio.sleep(self._config.membership_check_seconds)
            try:
                await self.check_memberships()
            except Exception:
                logger.exception("sfu: membership check failed; trying again next time")

    async def check_memberships(self) -> int:
        """Ask the directory about every watched session once; end those no longer allowed.

        One lookup per (Matrix room, user) per check, however many devices they are in with.
        A lookup that fails keeps the session (fail open): ending every call in the school on
        a directory hiccup is worse than a removed pupil staying a few seconds more, and the
        token still ends it within the hour. Returns how many sessions were ended.
        """
        watched = [
            (room, p)
            for room in list(self._rooms.values())
            for p in list(room.participants.values())
            if p.session is not None
        ]
        keys = sorted({(p.session.room_id, p.session.user_id) for _, p in watched if p.session})
        answers = await asyncio.gather(
            *(self._auth.facts_for(user_id, room_id) for room_id, user_id in keys),
            return_exceptions=True,
        )
        verdicts: dict[tuple[str, str], Refusal] = {}
        for key, answer in zip(keys, answers, strict=True):
            if isinstance(answer, Facts):
                verdict = still_allowed(answer)
                if isinstance(verdict, Refusal):
                    verdicts[key] = verdict
            elif isinstance(answer, ApiError):
                logger.warning("sfu: could not re-check %s in %s: %s", key[1], key[0], answer)
            else:
                logger.error("sfu: re-checking %s in %s failed: %r", key[1], key[0], answer)
        ended: list[tuple[Room, Participant, Refusal]] = []
        for room, participant in watched:
            session = participant.session
            assert session is not None
            refusal = verdicts.get((session.room_id, session.user_id))
            if refusal is not None:
                ended.append((room, participant, refusal))
        # All of them first, then one new participants list per room (not one per removal).
        # One by one: two concurrent leaves could both find the room empty and close it twice.
        for room, participant, refusal in ended:
            await self._remove(room, participant, refusal)
        for room in {id(room): room for room, _, _ in ended}.values():
            if self._rooms.get(room.name) is room:
                await self._broadcast(room)
        return len(ended)

    async def _remove(self, room: Room, participant: Participant, refusal: Refusal) -> None:
        """End one session: tell the client why, drop its media, close the socket.

        Closing from here (not the socket's own task) is safe: aiohttp wakes the task's
        pending receive, whose loop then ends and whose own leave finds nothing left to do.
        """
        logger.info(
            "sfu: ending %s in %s: %s",
            participant.session.user_id if participant.session else participant.identity,
            room.name,
            refusal.value,
        )
        reason = close_reason(refusal)
        if not participant.ws.closed:
            await asyncio.gather(
                participant.ws.send_str(
                    encode_message("removed", reason=refusal.value, message=refusal.message)
                ),
                return_exceptions=True,
            )
        await self._leave(room, participant, notify=False)
        await participant.ws.close(code=CLOSE_REMOVED, message=reason.encode())

    async def _shutdown(self, app: web.Application) -> None:
        for room in list(self._rooms.values()):
            if room.upstream is not None:
                room.upstream.cancel()
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
            await ws.send_str(encode_message("error", message=reason))
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
            room = self._rooms[room_name] = self._open_room(room_name)
        participant = Participant(identity, tokens.grant_of(claims), ws, session_of(claims))
        room.participants[identity] = participant
        logger.info("sfu: %s joined %s", identity, room_name)
        await ws.send_str(encode_message("joined", participant=identity))
        await self._broadcast(room)
        return room, participant

    def _open_room(self, name: str) -> Room:
        """A new room; on an edge, linked to the same room at the origin."""
        room = Room(name)
        origin = self._config.origin_url
        if origin is not None:

            def token() -> str:
                config = self._config
                now = int(self._clock())
                return relay_token(name, config.sfu_url, config.jwt_secret, now, config.jwt_issuer)

            upstream = Upstream(origin, name, token, room.router, lambda: self._renegotiate(room))
            room.upstream = asyncio.create_task(upstream.run())
        return room

    async def _handle(self, room: Room, participant: Participant, raw: str) -> bool:
        """Act on one message; False when the participant left."""
        try:
            message = parse_client_message(raw)
            if isinstance(message, Publish):
                await self._publish(room, participant, message.sdp)
            elif isinstance(message, Subscribe):
                await self._subscribe(room, participant)
            elif isinstance(message, Answer):
                answer = RTCSessionDescription(message.sdp, "answer")
                if await room.router.accept_answer(participant.identity, answer):
                    await self._refresh(room, participant)
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
            await participant.ws.send_str(encode_message("error", message=str(e)))
        except KeyError:
            await participant.ws.send_str(encode_message("error", message="answer without offer"))
        except Exception as e:  # a bad SDP: aiortc raises ValueError and friends
            logger.warning("sfu: %s in %s: %r", participant.identity, room.name, e)
            await participant.ws.send_str(encode_message("error", message=f"failed: {e}"))
        return True

    async def _publish(self, room: Room, participant: Participant, sdp: str) -> None:
        refusal = publish_refusal(participant.grant, sdp)
        if refusal is not None:
            raise SignallingError(refusal)
        if self._config.origin_url is not None:
            raise SignallingError("publish refused: this SFU is an edge; publish at the origin")
        if room.router.is_publishing(participant.identity):
            raise SignallingError("publish refused: already publishing")
        answer = await room.router.publish(
            participant.identity, RTCSessionDescription(sdp, "offer")
        )
        await participant.ws.send_str(encode_message("answer", sdp=answer.sdp))
        await self._broadcast(room)
        await self._renegotiate(room)

    async def _renegotiate(self, room: Room) -> None:
        """Offer new tracks to every subscriber that needs new m-lines for them."""
        for identity in room.router.subscribers():
            participant = room.participants.get(identity)
            if participant is not None:
                await self._refresh(room, participant)

    async def _refresh(self, room: Room, participant: Participant) -> None:
        offer = await room.router.refresh(participant.identity)
        if offer is not None and not participant.ws.closed:
            await participant.ws.send_str(encode_message("offer", sdp=offer.sdp))

    async def _subscribe(self, room: Room, participant: Participant) -> None:
        if not participant.grant.can_subscribe:
            raise SignallingError("subscribe refused: the token does not allow subscribing")
        # A second subscribe starts over (a client that lost its connection); new tracks
        # otherwise come as new offers on the same connection (`_renegotiate`).
        await room.router.unsubscribe(participant.identity)
        offer = await room.router.subscribe(participant.identity)
        await participant.ws.send_str(encode_message("offer", sdp=offer.sdp))

    async def _leave(self, room: Room, participant: Participant, notify: bool = True) -> None:
        if room.participants.get(participant.identity) is not participant:
            return  # already replaced by a reconnect
        del room.participants[participant.identity]
        await room.router.leave(participant.identity)
        logger.info("sfu: %s left %s", participant.identity, room.name)
        if not room.participants:
            if room.upstream is not None:
                room.upstream.cancel()
            self._retire(room.router)
            await room.router.close()
            if self._rooms.get(room.name) is room:
                del self._rooms[room.name]
        elif notify:
            await self._broadcast(room)

    async def _broadcast(self, room: Room) -> None:
        text = encode_message("participants", participants=room.listing())
        sockets = [p.ws for p in room.participants.values() if not p.ws.closed]
        await asyncio.gather(*(ws.send_str(text) for ws in sockets), return_exceptions=True)
