"""LiveKit's signalling, version 0, on `/rtc`: what Element Call, Element X and LiveKit's own
SDKs speak to a MatrixRTC focus of type `livekit` (reference: livekit.md §1).

A connection's life:

1. the token (`access_token` in the query, or an `Authorization: Bearer` header, as the Rust
   SDK sends it) is verified before the WebSocket upgrade: a bad one is a 401 with the reason,
   which `/rtc/validate` also answers for clients that ask why an upgrade failed. The token
   names its room (`video.room`);
2. the server's first frame is the JoinResponse: the room, the participant (a `PA_` ID, the
   token's `sub` as identity, the grant as permission) and the others already there; they are
   told of the newcomer;
3. the client offers on its publisher connection (first only its data channels) and trickles
   its candidates; the SFU answers (aiortc) and adds the candidates once the offer is set;
4. to publish, the client announces the track (AddTrack: refused unless the grant allows its
   source), gets its `TR_` ID (TrackPublished) and offers it; the others are told of the
   track (ParticipantUpdate) and then get an offer on their subscriber connection with an
   m-line for it (:mod:`sfu.livekit.media`); mute changes are passed on the same way, and
   who speaks goes to everyone as SpeakersChanged;
5. `ping_req` gets `pong_resp`; a client silent for longer than the ping timeout is gone;
6. before the token runs out, a fresh one is sent (`refresh_token`), for a full rejoin later;
   a delayed leave event the app delegated (`sfu.delayed`) is restarted meanwhile;
7. `leave`, or the socket closing, tells the others the participant is DISCONNECTED, and sends
   the delegated leave event, so the room's call members see it at once.

`/rtc/v1` (single connection) is not served: clients fall back to v0 on its 404, and the JS
client first fetches `/rtc/v1/validate`, cross-origin, hence CORS on that 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web
from livekit.protocol import models, rtc

from sferum_shared import Clock
from sfu import tokens
from sfu.config import SfuConfig
from sfu.delayed import DelayedLeave, DelayedLeaves, delayed_leave_of
from sfu.edge import relay_token
from sfu.grants import Refusal
from sfu.livekit import wire
from sfu.livekit.edge import OriginLink, rtc_url
from sfu.livekit.media import ORIGIN, TrackRouter
from sfu.livekit.participants import Connection, Room, bearer_token, ice_candidate
from sfu.membership import CLOSE_REMOVED, Session, close_reason, session_of
from sfu.moderation import publishable
from sfu.outlets import Background
from sfu.turn import rtc_ice_servers

logger = logging.getLogger(__name__)

#: A fresh token goes out this often (LiveKit sends one every 5 minutes): a rejoin always has
#: one that is valid, whatever the first token's lifetime.
REFRESH_TOKEN_SECONDS = 300
MAX_FRAME_BYTES = 256 * 1024  # an offer with simulcast layers and many m-lines stays well below
_CORS = {"Access-Control-Allow-Origin": "*"}
_STANDARD_CLAIMS = frozenset({"iss", "sub", "nbf", "exp", "video", "name", "metadata"})

TurnFor = Callable[[str], list[dict[str, Any]]]  # TURN servers for one participant's name


class LiveKitSignalling:
    """The `/rtc` endpoints and the rooms of LiveKit connections in one SFU process."""

    def __init__(
        self,
        config: SfuConfig,
        clock: Clock,
        turn_for: TurnFor,
        on_room_closed: Callable[[TrackRouter], None] = lambda router: None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._turn_for = turn_for
        self._on_room_closed = on_room_closed  # the server keeps its media counters (metrics)
        self._rooms: dict[str, Room] = {}
        self._background = Background()  # speaker changes, told from the forwarding path
        self._delayed = DelayedLeaves(config.homeserver_url)  # MSC4140 delegation
        # An edge mirrors each room of its viewers from the origin (`sfu.livekit.edge`).
        self._origin = rtc_url(config.origin_url) if config.origin_url is not None else None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/rtc", self._connect),
            web.get("/rtc/validate", self._validate),
            web.get("/rtc/v1", self._not_served),
            web.get("/rtc/v1/validate", self._not_served),
        ]

    async def close(self) -> None:
        for room in list(self._rooms.values()):
            for connection in list(room.connections.values()):
                await connection.ws.close()
        await self._delayed.close()

    def media(self) -> tuple[int, list[TrackRouter]]:
        """Participants and the rooms' routers now, for the SFU's metrics."""
        rooms = list(self._rooms.values())
        return sum(len(room.connections) for room in rooms), [room.router for room in rooms]

    def sessions(self) -> dict[str, Session]:
        """The watched sessions by participant ID, for the server's membership checks."""
        return {
            sid: connection.session
            for room in self._rooms.values()
            for sid, connection in room.connections.items()
            if connection.session is not None
        }

    async def remove(self, sid: str, refusal: Refusal) -> None:
        """Ends a session whose user may no longer be in the call (banned, left the room).

        The client is told with LiveKit's own `leave` (PARTICIPANT_REMOVED, no reconnect), so
        the apps show "removed" rather than try again; then the socket closes with our code
        and reason, and the connection's own task tells the others it is gone.
        """
        for room in self._rooms.values():
            connection = room.connections.get(sid)
            if connection is None:
                continue
            logger.info("sfu: ending livekit %s in %s: %s", sid, room.name, refusal.value)
            with contextlib.suppress(ConnectionResetError):
                await connection.ws.send_bytes(
                    wire.leave(models.DisconnectReason.PARTICIPANT_REMOVED)
                )
            await connection.ws.close(code=CLOSE_REMOVED, message=close_reason(refusal).encode())
            return

    # -- a teacher's moderation (sfu.livekit.roomservice) ---------------------------------------

    def participants(self, room_name: str) -> list[models.ParticipantInfo]:
        """Everyone in the call, hidden viewers too (the teacher's list)."""
        room = self._rooms.get(room_name)
        return [c.info() for c in room.connections.values()] if room else []

    def find(self, room_name: str, identity: str) -> models.ParticipantInfo | None:
        found = self._find(room_name, identity)
        return found[1].info() if found else None

    async def allow_camera(self, room_name: str, identity: str, allowed: bool) -> None:
        """The teacher lets a participant publish the camera, or takes it back (then the
        camera tracks are no longer forwarded). Only what `sfu.moderation.publishable` grants:
        a participant whose token has the camera keeps it."""
        room, connection = self._target(room_name, identity)
        grant = publishable(connection.token_grant, allowed)
        if grant == connection.grant:
            return
        connection.grant = grant
        for info in connection.published.values():
            if info.source == models.TrackSource.CAMERA:
                room.router.block(info.sid, not allowed)
        await self._changed(room, connection, tell_self=True)

    async def mute_track(
        self, room_name: str, identity: str, track_sid: str, muted: bool
    ) -> models.TrackInfo:
        """The teacher mutes (or unmutes) a track: its owner's app is asked to mute it, and the
        SFU stops forwarding it meanwhile, whatever that app does."""
        room, connection = self._target(room_name, identity)
        info = connection.published.get(track_sid)
        if info is None:
            raise KeyError(track_sid)
        room.router.block(track_sid, muted)
        with contextlib.suppress(ConnectionResetError):
            await connection.ws.send_bytes(wire.server_mute(track_sid, muted))
        if info.muted != muted:
            info.muted = muted
            await self._changed(room, connection)
        return info

    async def remove_participant(self, room_name: str, identity: str) -> None:
        """The teacher removes a participant: the session ends and the same Matrix user cannot
        come back into this call while it lasts."""
        room, connection = self._target(room_name, identity)
        room.removed.add(connection.user)
        await self.remove(connection.sid, Refusal.REMOVED)

    def _find(self, room_name: str, identity: str) -> tuple[Room, Connection] | None:
        room = self._rooms.get(room_name)
        if room is None:
            return None
        connection = next((c for c in room.connections.values() if c.identity == identity), None)
        return (room, connection) if connection is not None else None

    def _target(self, room_name: str, identity: str) -> tuple[Room, Connection]:
        found = self._find(room_name, identity)
        if found is None:
            raise KeyError(identity)
        return found

    # -- HTTP -----------------------------------------------------------------------------

    async def _not_served(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text="version 1 is not served here", headers=_CORS)

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token of ours, for any call (the token names its room)."""
        return tokens.verify(token, self._config.jwt_secret, None, int(self._clock.seconds()))

    def _claims(self, request: web.Request) -> dict[str, Any]:
        token = bearer_token(request)
        if not token:
            raise web.HTTPUnauthorized(text="no access token", headers=_CORS)
        try:
            return self.verify(token)
        except tokens.TokenError as e:
            raise web.HTTPUnauthorized(text=str(e), headers=_CORS) from None

    async def _validate(self, request: web.Request) -> web.Response:
        self._claims(request)
        return web.Response(text="success", headers=_CORS)

    async def _connect(self, request: web.Request) -> web.WebSocketResponse:
        claims = self._claims(request)  # before the upgrade: a refusal is a plain 401
        session = session_of(claims)
        name = str(claims["video"]["room"])
        user = session.user_id if session is not None else str(claims["sub"])
        if name in self._rooms and user in self._rooms[name].removed:
            raise web.HTTPForbidden(text=Refusal.REMOVED.message, headers=_CORS)
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES)
        await ws.prepare(request)
        room = self._room(name)
        connection = Connection(
            ws=ws,
            sid=wire.new_sid("PA_"),
            identity=str(claims["sub"]),
            token_grant=tokens.grant_of(claims),
            claims=claims,
            joined_at=int(self._clock.seconds()),
            session=session,
        )
        refresher = asyncio.create_task(self._refresh_tokens(connection))
        delayed_leave = delayed_leave_of(claims)
        keeper = asyncio.create_task(self._delayed.keep(delayed_leave)) if delayed_leave else None
        try:
            await self._join(room, connection)
            await self._serve(room, connection)
        except (ConnectionResetError, wire.WireError) as e:
            logger.info("sfu: livekit %s in %s: %s", connection.sid, room.name, e)
        finally:
            refresher.cancel()
            if keeper is not None:
                keeper.cancel()
            # Shielded whole: aiohttp cancels the handler when the client's socket drops, and
            # the others must still hear of the leave, and the delayed leave must still go out.
            await asyncio.shield(self._depart(room, connection, delayed_leave))
        return ws

    async def _depart(
        self, room: Room, connection: Connection, delayed_leave: DelayedLeave | None
    ) -> None:
        await self._leave(room, connection)
        if delayed_leave is not None:
            # The app may be gone for good: its "left the call" goes out now.
            await self._delayed.send(delayed_leave)
        await connection.ws.close()

    def _room(self, name: str) -> Room:
        """The room of this name, made for its first participant; on an edge, linked to the
        same room at the origin, whose speakers it passes on rather than detect them again."""
        room = self._rooms.get(name)
        if room is not None:
            return room
        router = TrackRouter(
            ice_servers=lambda participant: rtc_ice_servers(self._turn_for(f"sfu:{participant}")),
            on_speakers=(
                (lambda levels: self._speakers_changed(name, levels))
                if self._origin is None
                else (lambda levels: None)
            ),
        )
        room = self._rooms[name] = Room(name, wire.new_sid("RM_"), router)
        if self._origin is not None:
            config = self._config

            def token() -> str:
                now = int(self._clock.seconds())
                return relay_token(name, config.sfu_url, config.jwt_secret, now, config.jwt_issuer)

            link = OriginLink(
                self._origin,
                room,
                token,
                tell=lambda frame: self._tell(room, frame),
                on_tracks=lambda: self._offer_everyone(room),
                clock=self._clock,
            )
            room.link = asyncio.create_task(link.run())
        return room

    async def _offer_everyone(self, room: Room) -> None:
        """Tracks came from the origin: every viewer of the edge gets them."""
        for connection in list(room.connections.values()):
            if connection.grant.can_subscribe:
                room.router.subscribe(connection.sid, room.router.track_sids())
                await self._offer(room, connection)

    def _speakers_changed(self, name: str, levels: dict[str, float]) -> None:
        room = self._rooms.get(name)
        if room is not None:
            self._background.spawn(self._tell(room, wire.speakers_changed(levels)))

    # -- one connection ---------------------------------------------------------------------

    async def _join(self, room: Room, connection: Connection) -> None:
        others = [*(c.info() for c in room.visible()), *room.remote.values()]
        await connection.ws.send_bytes(
            wire.join_response(
                room_sid=room.sid,
                room_name=room.name,
                me=connection.info(),
                others=others,
                servers=self._turn_for(connection.identity),
                now=int(self._clock.seconds()),
            )
        )
        room.connections[connection.sid] = connection
        if not connection.grant.hidden:
            await self._tell(room, wire.participants_update([connection.info()]), but=connection)
        logger.info(
            "sfu: livekit %s (%s) joined %s", connection.sid, connection.identity, room.name
        )
        if connection.grant.can_subscribe:
            room.router.subscribe(connection.sid, room.router.track_sids())
            await self._offer(room, connection)

    async def _serve(self, room: Room, connection: Connection) -> None:
        """Reads frames until the client leaves, goes quiet or the socket closes."""
        while True:
            try:
                msg = await connection.ws.receive(timeout=wire.PING_TIMEOUT_SECONDS)
            except TimeoutError:
                logger.info("sfu: livekit %s sent nothing for a ping timeout", connection.sid)
                return
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            if msg.type != WSMsgType.BINARY:
                continue
            request = wire.parse_request(msg.data)
            if not await self._handle(room, connection, request):
                return

    async def _handle(
        self, room: Room, connection: Connection, request: rtc.SignalRequest
    ) -> bool:
        """One client request; False when the client leaves."""
        kind = request.WhichOneof("message")
        if kind == "leave":
            return False
        if kind == "ping_req":
            await connection.ws.send_bytes(wire.pong(request.ping_req.timestamp, self._clock.ms()))
        elif kind == "ping":
            await connection.ws.send_bytes(wire.legacy_pong(request.ping))
        elif kind == "add_track":
            await self._add_track(connection, request.add_track)
        elif kind == "offer":
            await self._publish(room, connection, request.offer)
        elif kind == "answer":
            await room.router.accept_answer(connection.sid, request.answer.sdp, request.answer.id)
            await self._offer(room, connection)  # what was added while that offer was out
        elif kind == "trickle":
            candidate = ice_candidate(request.trickle.candidateInit)
            if candidate is not None:
                subscriber = request.trickle.target == rtc.SUBSCRIBER
                await room.router.trickle(connection.sid, subscriber, candidate)
        elif kind == "mute":
            await self._mute(room, connection, request.mute)
        # Everything else (subscription settings, layers, metadata, sync state) is accepted
        # and changes nothing here: every participant receives every track.
        return True

    async def _add_track(self, connection: Connection, request: rtc.AddTrackRequest) -> None:
        """An announced track gets its ID at once if the grant allows it (clients wait 10 s)."""
        if self._origin is not None:
            await connection.ws.send_bytes(
                wire.add_track_refused(request, "this SFU is an edge: publish at the origin")
            )
            return
        if not wire.may_publish(connection.grant, request):
            logger.info("sfu: livekit %s may not publish %s", connection.sid, request.source)
            await connection.ws.send_bytes(
                wire.add_track_refused(request, "your grant does not allow this source")
            )
            return
        info = wire.track_info(wire.new_sid("TR_"), request)
        connection.announced[request.cid] = info
        await connection.ws.send_bytes(wire.track_published(request.cid, info))

    async def _publish(
        self, room: Room, connection: Connection, offer: rtc.SessionDescription
    ) -> None:
        """Answer the publisher's offer; tracks it starts are told of, then offered, to all."""
        sdp, started = await room.router.answer_publisher(
            connection.sid, offer.sdp, connection.announced
        )
        await connection.ws.send_bytes(wire.answer(sdp, offer.id))
        if not started:
            return
        connection.published.update((info.sid, info) for info in started)
        connection.announced = {
            cid: info
            for cid, info in connection.announced.items()
            if info.sid not in connection.published
        }
        await self._changed(room, connection)
        for other in room.connections.values():
            if other is not connection and other.grant.can_subscribe:
                room.router.subscribe(other.sid, [info.sid for info in started])
                await self._offer(room, other)

    async def _mute(
        self, room: Room, connection: Connection, request: rtc.MuteTrackRequest
    ) -> None:
        info = connection.published.get(request.sid)
        if info is None or info.muted == request.muted:
            return
        info.muted = request.muted
        await self._changed(room, connection)

    async def _changed(
        self, room: Room, connection: Connection, *, tell_self: bool = False
    ) -> None:
        """A newer version of the participant, for the others (before any offer of it), and
        for the participant too when what changed is theirs to know (their permission)."""
        connection.version += 1
        frame = wire.participants_update([connection.info()])
        if not connection.grant.hidden:
            await self._tell(room, frame, but=connection)
        if tell_self:
            with contextlib.suppress(ConnectionResetError):
                await connection.ws.send_bytes(frame)

    async def _offer(self, room: Room, connection: Connection) -> None:
        offer = await room.router.next_offer(connection.sid)
        if offer is not None:
            with contextlib.suppress(ConnectionResetError):
                await connection.ws.send_bytes(wire.offer(*offer))

    async def _refresh_tokens(self, connection: Connection) -> None:
        """A fresh token every few minutes, with the same room, identity and grant."""
        config = self._config
        private = {k: v for k, v in connection.claims.items() if k not in _STANDARD_CLAIMS}
        while True:
            await asyncio.sleep(REFRESH_TOKEN_SECONDS)
            token = tokens.issue(
                connection.grant,
                str(connection.claims["video"]["room"]),
                connection.identity,
                config.jwt_secret,
                int(self._clock.seconds()),
                config.token_ttl_seconds,
                config.jwt_issuer,
                private_claims=private,
            )
            with contextlib.suppress(ConnectionResetError):
                await connection.ws.send_bytes(wire.refresh_token(token))

    async def _leave(self, room: Room, connection: Connection) -> None:
        """Tells the others first, then closes the participant's peer connections.

        In that order: aiortc's close can take long (or wait on the close it starts itself when
        the client's DTLS ends), and the others must not go on seeing a participant who left.
        Run shielded (`_depart`): cancelling a close that waits on aiortc's own breaks that one.
        """
        if room.connections.pop(connection.sid, None) is None:
            return
        if not room.connections and self._rooms.get(room.name) is room:
            del self._rooms[room.name]
            self._on_room_closed(room.router)
            if room.link is not None:  # an edge's last viewer: the origin link goes too
                room.link.cancel()
                await room.router.leave(ORIGIN)
        connection.version += 1
        if not connection.grant.hidden:
            await self._tell(room, wire.participants_update([connection.info(active=False)]))
        logger.info("sfu: livekit %s left %s", connection.sid, room.name)
        await room.router.leave(connection.sid)

    async def _tell(self, room: Room, frame: bytes, but: Connection | None = None) -> None:
        """One frame to everyone in the room (but one)."""
        for other in list(room.connections.values()):
            if other is not but:
                with contextlib.suppress(ConnectionResetError):
                    await other.ws.send_bytes(frame)
