"""The SFU process: the auth routes, `/health`, and WebSocket signalling at `/ws`, in one app.

One process serves both halves so that the JWT secret never leaves it and a deployment has one
more service, not two. A socket's life:

1. the first message is ``join {room, token}``; the token is verified (signature, time, room)
   before anything else is read, and a refusal closes the socket;
2. ``publish {sdp}`` hands the offer to the room's :class:`MediaRouter` and answers, but only
   for the media kinds the token's grant allows (a viewer's token publishes nothing), plus a
   camera the teacher allowed; an edge (`sfu.edge`) takes no publishers at all;
3. ``subscribe`` makes the SFU offer the room's current tracks; the client sends ``answer``;
   a later publisher's tracks reach subscribers as new offers on the same connection;
4. ``mute``, ``hand`` and ``leave`` (or the socket closing) update everyone's
   ``participants`` list; changes of the active speakers go out as ``speakers``;
5. ``moderate`` lets the teacher mute, remove, or allow a pupil's camera (`sfu.moderation`);
6. every ``membership_check_seconds`` the directory is asked again whether the session's Matrix
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
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web
from aiortc import RTCSessionDescription

from sferum_shared import Clock
from sfu import tokens
from sfu.authservice import AuthService
from sfu.call import Participant, Room, end_socket, publish_refusal, speakers_message
from sfu.config import SfuConfig
from sfu.edge import Upstream, relay_token
from sfu.forwarding import MediaRouter
from sfu.grants import Refusal
from sfu.livekit import LiveKitSignalling, RoomService
from sfu.membership import refusals, session_of
from sfu.metrics import (
    CONTENT_TYPE,
    RouterCounters,
    SfuMetrics,
    Snapshot,
    retired_with,
    snapshot,
)
from sfu.moderation import moderation_refusal, publishable
from sfu.page import page_routes
from sfu.signalling import (
    MAX_MESSAGE_BYTES,
    Answer,
    Hand,
    Join,
    Leave,
    Moderate,
    Mute,
    Publish,
    SignallingError,
    Subscribe,
    authenticate,
    encode_message,
    parse_client_message,
)
from sfu.turn import TTL_SECONDS, ice_servers, rtc_ice_servers

logger = logging.getLogger(__name__)

#: A socket that has not sent a valid join by then is closed: it holds no room yet.
JOIN_TIMEOUT_SECONDS = 10.0
#: WebSocket close code for a refused join (4000-4999 are the application's own).
CLOSE_REFUSED = 4401


class SfuServer:
    """Rooms, their routers and sockets; :meth:`app` is the whole HTTP side of the SFU."""

    def __init__(self, config: SfuConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._rooms: dict[str, Room] = {}
        self._metrics = SfuMetrics(self._snapshot)
        self._auth = AuthService(config, clock=clock, on_refusal=self._count_refusal)
        self._livekit = LiveKitSignalling(config, clock, self._turn, self._retire)
        # Totals of rooms already closed, so the packet counters never go down.
        self._retired = Snapshot()
        self._tasks: set[asyncio.Task[None]] = set()  # speaker announcements under way

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
        self._auth.add_routes(app)  # first: its HTTP session outlives the background tasks
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/ws", self._websocket)
        app.add_routes(self._livekit.routes())
        app.add_routes(RoomService(self._livekit, self._livekit.verify).routes())
        # The browser page (a widget in lesson and news rooms); viewers may go to the edges.
        app.add_routes(page_routes(self._config.edge_urls))
        app.on_shutdown.append(self._shutdown)
        app.cleanup_ctx.append(self._background)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "rooms": len(self._rooms)})

    async def _metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    def _snapshot(self) -> Snapshot:
        """The /ws rooms and the LiveKit ones (Element Call, Element X) together."""
        rooms = self._rooms.values()
        livekit_participants, livekit_routers = self._livekit.media()
        participants = sum(len(room.participants) for room in rooms) + livekit_participants
        routers: list[RouterCounters] = [room.router for room in rooms]
        routers += livekit_routers
        return snapshot(participants, routers, self._retired)

    def _count_refusal(self, reason: str) -> None:
        self._metrics.auth_refusals.labels(reason).inc()

    def _retire(self, router: RouterCounters) -> None:
        """A room closed: its counts join the totals, so the counters never go down."""
        self._retired = retired_with(self._retired, router)

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
        """Ask the directory about every watched session (`sfu.membership.refusals`); end
        those no longer allowed. Returns how many sessions were ended."""
        watched = [
            (room, p)
            for room in list(self._rooms.values())
            for p in list(room.participants.values())
            if p.session is not None
        ]
        livekit = self._livekit.sessions()
        sessions = [p.session for _, p in watched if p.session is not None]
        verdicts = await refusals([*sessions, *livekit.values()], self._auth.facts_for)
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
        livekit_ended = 0
        for sid, session in livekit.items():
            refusal = verdicts.get((session.room_id, session.user_id))
            if refusal is not None:
                await self._livekit.remove(sid, refusal)
                livekit_ended += 1
        return len(ended) + livekit_ended

    async def _remove(self, room: Room, participant: Participant, refusal: Refusal) -> None:
        """End one session: tell the client why, drop its media, close the socket.

        Closing from here (not the socket's own task) is safe: aiohttp wakes the task's
        pending receive, whose loop then ends and whose own leave finds nothing left to do.
        """
        logger.info("sfu: ending %s in %s: %s", participant.user, room.name, refusal.value)
        await self._leave(room, participant, notify=False)
        await end_socket(participant.ws, refusal)

    async def _shutdown(self, app: web.Application) -> None:
        await self._livekit.close()
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
            claims.update(
                tokens.verify(token, self._config.jwt_secret, room, int(self._clock.seconds()))
            )
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
        session = session_of(claims)
        if existing is not None and (session.user_id if session else identity) in existing.removed:
            await end_socket(ws, Refusal.REMOVED)
            return None
        previous = existing.participants.get(identity) if existing else None
        if existing is not None and previous is not None:
            # The same membership reconnecting (a dropped network): the new socket wins.
            await self._leave(existing, previous, notify=False)
            await previous.ws.close()
        room = self._rooms.get(room_name)
        if room is None:
            room = self._rooms[room_name] = self._open_room(room_name)
        participant = Participant(identity, tokens.grant_of(claims), ws, session)
        room.participants[identity] = participant
        logger.info("sfu: %s joined %s", identity, room_name)
        servers = self._turn(participant.user)  # the client's ICE goes through our TURN too
        await ws.send_str(encode_message("joined", participant=identity, ice_servers=servers))
        await self._broadcast(room)
        return room, participant

    def _turn(self, name: str) -> list[dict[str, Any]]:
        config = self._config
        now = int(self._clock.seconds())
        return ice_servers(config.turn_uris, config.turn_shared_secret, name, now, TTL_SECONDS)

    def _open_room(self, name: str) -> Room:
        """A new room; on an edge, linked to the same room at the origin."""
        room = Room(name)

        def on_speakers(slots: tuple[str | None, ...]) -> None:
            task = asyncio.create_task(self._announce_speakers(room, slots))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        room.router = MediaRouter(
            on_speakers=on_speakers,
            # One TURN name per connection: coturn's quota counts allocations per username.
            ice_servers=lambda participant: rtc_ice_servers(self._turn(f"sfu:{participant}")),
        )
        origin = self._config.origin_url
        if origin is not None:

            def token() -> str:
                config = self._config
                now = int(self._clock.seconds())
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
            elif isinstance(message, Hand):
                participant.hand_raised = message.raised
                await self._broadcast(room)
            elif isinstance(message, Moderate):
                await self._moderate(room, participant, message)
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
        refusal = publish_refusal(publishable(participant.grant, participant.camera_allowed), sdp)
        if refusal is not None:
            raise SignallingError(refusal)
        if self._config.origin_url is not None:
            raise SignallingError("publish refused: this SFU is an edge; publish at the origin")
        answer = await room.router.publish(
            participant.identity, RTCSessionDescription(sdp, "offer")
        )
        await participant.ws.send_str(encode_message("answer", sdp=answer.sdp))
        await self._broadcast(room)
        await self._renegotiate(room)

    async def _moderate(self, room: Room, actor: Participant, message: Moderate) -> None:
        target = room.participants.get(message.participant)
        refusal = moderation_refusal(
            actor.grant, actor.identity, target.identity if target else None
        )
        if refusal is not None or target is None:
            raise SignallingError(refusal or "moderate refused")
        logger.info("sfu: %s: %s %s", room.name, message.action, target.identity)
        action, router = message.action, room.router
        if action == "remove":
            room.removed.add(target.user)
            await self._remove(room, target, Refusal.REMOVED)
        else:
            if action in ("mute", "unmute"):
                muted = action == "mute"
                target.muted_by_teacher = {"audio"} if muted else set()
                router.block(target.identity, "audio", muted)
            else:
                target.camera_allowed = action == "allow_camera"
                router.block(target.identity, "video", not target.camera_allowed)
            notice = encode_message("moderated", action=action, by=actor.identity)
            await asyncio.gather(target.ws.send_str(notice), return_exceptions=True)
        await self._broadcast(room)

    async def _announce_speakers(self, room: Room, slots: tuple[str | None, ...]) -> None:
        await self._send_all(room, speakers_message(room, slots))

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
        await participant.ws.send_str(speakers_message(room, room.router.speakers))

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
        await self._send_all(room, encode_message("participants", participants=room.listing()))

    @staticmethod
    async def _send_all(room: Room, text: str) -> None:
        sockets = [p.ws for p in room.participants.values() if not p.ws.closed]
        await asyncio.gather(*(ws.send_str(text) for ws in sockets), return_exceptions=True)
