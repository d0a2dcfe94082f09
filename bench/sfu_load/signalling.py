"""How a client publishes to, and watches through, each kind of server.

A :class:`Target` names the server (`kind`, `url`, and for the SFU and Janus the room); a
:class:`Signaller` is one process's signalling towards it, opened once and used for every
connection the process makes:

* ``sfu`` (and ``edges``, its viewers spread over edge processes): this repo's SFU. One
  WebSocket per participant: ``join`` with a token minted here
  with the SFU's secret (``sfu.tokens.issue``), then ``publish`` (our offer, its answer) or
  ``subscribe`` (its offer, our answer). The socket is read until closed, so that the
  participants lists are consumed and aiohttp answers the server's heartbeats.
* ``livekit``: the same SFU through LiveKit's protocol (``/rtc``, protobuf frames from the
  ``livekit-protocol`` package), as Element Call and Element X reach it: the publisher
  announces its track (AddTrack), waits for TrackPublished, then offers; a viewer waits for the
  SFU's offer on its subscriber connection and answers it. Each socket sends LiveKit's pings.
* ``janus``: Janus's videoroom over its HTTP API. One Janus session per process, kept alive by
  a long poll that also delivers the plugin's asynchronous answers; one handle per connection.
  The publisher creates the room, joins it with a fixed feed ID and publishes; a viewer joins as
  a subscriber to that feed, gets Janus's offer and answers with ``start``.
* ``relay`` (``bench/sfu_load/relay.py``) and ``direct`` (the publisher itself serves its
  viewer): plain HTTP, ``POST /publish`` and ``POST /watch`` with an offer, the answer back.

aiortc gathers its candidates before it hands out a description, so every SDP is complete and
Janus is told ``trickle: false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import aiohttp
import attrs
from aiortc import RTCPeerConnection, RTCSessionDescription
from livekit.protocol import models
from livekit.protocol import rtc as lk

from sfu import tokens
from sfu.grants import CAMERA, MICROPHONE, Grant

JANUS_FEED = 1  # the publisher's feed ID in the Janus room
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=60)
EXCHANGE_SECONDS = 30.0  # one offer/answer round trip, however slow the box


class SignallingFailed(RuntimeError):
    """A server refused or did not answer a signalling step."""


def _as_tuple(urls: Sequence[str]) -> tuple[str, ...]:
    """JSON gives lists; a frozen target keeps tuples."""
    return tuple(urls)


@attrs.frozen
class Target:
    kind: str  # sfu | edges | livekit | janus | relay | direct
    url: str  # the SFU's /ws or its root (livekit), Janus's /janus, or relay's and direct's root
    room: str = ""  # the SFU room name, or Janus's numeric room ID as text
    secret: str = ""  # the SFU's JWT secret
    #: edges: the edges' /ws, among which viewers are spread (the publisher uses `url`)
    edge_urls: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple)

    def viewer_url(self, name: str) -> str:
        """Where the viewer `name` watches: an edge, if there are edges (by the name's
        number, so that the viewers spread evenly), else the server itself."""
        if not self.edge_urls:
            return self.url
        number = int("".join(c for c in name if c.isdigit()) or 0)
        return self.edge_urls[number % len(self.edge_urls)]

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Target:
        return cls(**json.loads(text))


def _description(sdp: dict[str, Any]) -> RTCSessionDescription:
    return RTCSessionDescription(sdp=sdp["sdp"], type=sdp["type"])


def _jsep(description: RTCSessionDescription) -> dict[str, Any]:
    return {"type": description.type, "sdp": description.sdp, "trickle": False}


async def _answer(pc: RTCPeerConnection, offer: RTCSessionDescription) -> RTCSessionDescription:
    await pc.setRemoteDescription(offer)
    await pc.setLocalDescription(await pc.createAnswer())
    return pc.localDescription


async def _offer(pc: RTCPeerConnection) -> RTCSessionDescription:
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription


class Signaller(ABC):
    """One process's signalling towards one target; see the module docstring."""

    def __init__(self, target: Target, http: aiohttp.ClientSession) -> None:
        self.target = target
        self._http = http

    @abstractmethod
    async def publish(self, pc: RTCPeerConnection) -> None:
        """Negotiate `pc` (its tracks added) as the room's publisher."""

    @abstractmethod
    async def watch(self, pc: RTCPeerConnection, name: str) -> None:
        """Negotiate `pc` as a viewer of the publisher's video."""

    @abstractmethod
    async def close(self) -> None:
        """Leave: sockets closed, sessions destroyed."""


class HttpSignaller(Signaller):
    """``relay`` and ``direct``: one POST per connection."""

    async def _exchange(self, path: str, offer: RTCSessionDescription) -> RTCSessionDescription:
        body = {"type": offer.type, "sdp": offer.sdp}
        async with self._http.post(self.target.url + path, json=body) as response:
            if response.status != 200:
                raise SignallingFailed(f"{path}: HTTP {response.status}: {await response.text()}")
            return _description(await response.json())

    async def publish(self, pc: RTCPeerConnection) -> None:
        await pc.setRemoteDescription(await self._exchange("/publish", await _offer(pc)))

    async def watch(self, pc: RTCPeerConnection, name: str) -> None:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setRemoteDescription(await self._exchange("/watch", await _offer(pc)))

    async def close(self) -> None:
        """Nothing to leave: every exchange was a request of its own."""


class SfuSignaller(Signaller):
    """``sfu``: a WebSocket per participant, read until it closes."""

    def __init__(self, target: Target, http: aiohttp.ClientSession) -> None:
        super().__init__(target, http)
        self._sockets: list[aiohttp.ClientWebSocketResponse] = []
        self._readers: list[asyncio.Task[None]] = []

    async def _join(
        self, identity: str, grant: Grant, url: str = ""
    ) -> aiohttp.ClientWebSocketResponse:
        ws = await self._http.ws_connect(url or self.target.url)
        self._sockets.append(ws)
        token = tokens.issue(
            grant, self.target.room, identity, self.target.secret, int(time.time())
        )
        await ws.send_json({"type": "join", "room": self.target.room, "token": token})
        await self._expect(ws, "joined")
        return ws

    @staticmethod
    async def _expect(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
        async with asyncio.timeout(EXCHANGE_SECONDS):
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise SignallingFailed(f"socket ended waiting for {kind!r}: {msg.type}")
                data: dict[str, Any] = json.loads(msg.data)
                if data["type"] == kind:
                    return data
                if data["type"] in ("error", "removed"):
                    raise SignallingFailed(f"waiting for {kind!r}: {data}")

    def _keep_reading(
        self, ws: aiohttp.ClientWebSocketResponse, viewer: RTCPeerConnection | None = None
    ) -> None:
        """Read until the socket closes; a viewer answers the SFU's later offers (an edge
        offers again once its origin's tracks arrive)."""

        async def read() -> None:
            async for msg in ws:
                if viewer is None or msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("type") == "offer":
                    offer = RTCSessionDescription(data["sdp"], "offer")
                    answer = await _answer(viewer, offer)
                    await ws.send_json({"type": "answer", "sdp": answer.sdp})

        self._readers.append(asyncio.create_task(read()))

    async def publish(self, pc: RTCPeerConnection) -> None:
        ws = await self._join("publisher", Grant.publisher(CAMERA, MICROPHONE))
        await ws.send_json({"type": "publish", "sdp": (await _offer(pc)).sdp})
        answer = await self._expect(ws, "answer")
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        self._keep_reading(ws)

    async def watch(self, pc: RTCPeerConnection, name: str) -> None:
        ws = await self._join(name, Grant.viewer(), self.target.viewer_url(name))
        await ws.send_json({"type": "subscribe"})
        offer = await self._expect(ws, "offer")
        answer = await _answer(pc, RTCSessionDescription(offer["sdp"], "offer"))
        await ws.send_json({"type": "answer", "sdp": answer.sdp})
        self._keep_reading(ws, viewer=pc)

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        for ws in self._sockets:
            await ws.close()


class LiveKitSignaller(Signaller):
    """``livekit``: LiveKit's version 0 signalling, one socket per participant."""

    PING_SECONDS = 5.0

    def __init__(self, target: Target, http: aiohttp.ClientSession) -> None:
        super().__init__(target, http)
        self._sockets: list[aiohttp.ClientWebSocketResponse] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def _join(self, identity: str, grant: Grant) -> aiohttp.ClientWebSocketResponse:
        token = tokens.issue(
            grant, self.target.room, identity, self.target.secret, int(time.time())
        )
        ws = await self._http.ws_connect(f"{self.target.url}/rtc", params={"access_token": token})
        self._sockets.append(ws)
        await self._expect(ws, "join")
        return ws

    @staticmethod
    async def _send(ws: aiohttp.ClientWebSocketResponse, **message: Any) -> None:
        await ws.send_bytes(lk.SignalRequest(**message).SerializeToString())

    @staticmethod
    async def _expect(ws: aiohttp.ClientWebSocketResponse, kind: str) -> lk.SignalResponse:
        async with asyncio.timeout(EXCHANGE_SECONDS):
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise SignallingFailed(f"socket ended waiting for {kind!r}: {msg.type}")
                frame = lk.SignalResponse()
                frame.ParseFromString(msg.data)
                if frame.WhichOneof("message") == kind:
                    return frame
                if frame.WhichOneof("message") in ("leave", "request_response"):
                    raise SignallingFailed(f"waiting for {kind!r}: {frame}")

    def _keep_alive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read what the SFU sends (updates, speakers) and ping as LiveKit's clients do."""

        async def read() -> None:
            async for _ in ws:
                pass

        self._tasks.append(asyncio.create_task(read()))
        self._keep_pinging(ws)

    def _keep_pinging(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async def ping() -> None:
            while not ws.closed:
                await asyncio.sleep(self.PING_SECONDS)
                now = int(time.time() * 1000)
                await self._send(ws, ping_req=lk.Ping(timestamp=now))

        self._tasks.append(asyncio.create_task(ping()))

    async def publish(self, pc: RTCPeerConnection) -> None:
        ws = await self._join("publisher", Grant.publisher(CAMERA, MICROPHONE))
        [sender] = pc.getSenders()
        assert sender.track is not None
        add = lk.AddTrackRequest(
            cid=sender.track.id,
            name="camera",
            type=models.TrackType.VIDEO,
            source=models.TrackSource.CAMERA,
        )
        await self._send(ws, add_track=add)
        await self._expect(ws, "track_published")
        offer = await _offer(pc)
        await self._send(ws, offer=lk.SessionDescription(type="offer", sdp=offer.sdp, id=1))
        answer = (await self._expect(ws, "answer")).answer
        await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        self._keep_alive(ws)

    async def watch(self, pc: RTCPeerConnection, name: str) -> None:
        ws = await self._join(name, Grant.viewer())
        offer = (await self._expect(ws, "offer")).offer
        answer = await _answer(pc, RTCSessionDescription(offer.sdp, "offer"))
        await self._send(
            ws, answer=lk.SessionDescription(type="answer", sdp=answer.sdp, id=offer.id)
        )
        self._keep_alive(ws)

    async def participate(
        self, publisher: RTCPeerConnection, subscriber: RTCPeerConnection, name: str
    ) -> None:
        """A lesson's participant: announces and publishes `publisher`'s tracks, and answers
        every offer of the others' tracks on `subscriber`, as they come, for good."""
        ws = await self._join(name, Grant.publisher(CAMERA, MICROPHONE))
        loop = asyncio.get_running_loop()
        tracks = [sender.track for sender in publisher.getSenders() if sender.track is not None]
        published = {track.id: loop.create_future() for track in tracks}
        answered: asyncio.Future[lk.SessionDescription] = loop.create_future()

        async def read() -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                frame = lk.SignalResponse()
                frame.ParseFromString(msg.data)
                kind = frame.WhichOneof("message")
                if kind == "track_published":
                    published[frame.track_published.cid].set_result(None)
                elif kind == "answer" and not answered.done():
                    answered.set_result(frame.answer)
                elif kind == "offer":
                    offer = RTCSessionDescription(frame.offer.sdp, "offer")
                    answer = await _answer(subscriber, offer)
                    reply = lk.SessionDescription(type="answer", sdp=answer.sdp, id=frame.offer.id)
                    await self._send(ws, answer=reply)

        self._tasks.append(asyncio.create_task(read()))
        self._keep_pinging(ws)
        for track in tracks:
            video = track.kind == "video"
            add = lk.AddTrackRequest(
                cid=track.id,
                name=track.kind,
                type=models.TrackType.VIDEO if video else models.TrackType.AUDIO,
                source=models.TrackSource.CAMERA if video else models.TrackSource.MICROPHONE,
            )
            await self._send(ws, add_track=add)
        async with asyncio.timeout(EXCHANGE_SECONDS):
            await asyncio.gather(*published.values())
            offer = await _offer(publisher)
            await self._send(ws, offer=lk.SessionDescription(type="offer", sdp=offer.sdp, id=1))
            answer = await answered
        await publisher.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for ws in self._sockets:
            await ws.close()


class JanusSignaller(Signaller):
    """``janus``: one session, a long poll for its events, a handle per connection."""

    def __init__(self, target: Target, http: aiohttp.ClientSession) -> None:
        super().__init__(target, http)
        self._session_url = ""
        self._transactions = (f"t{n}" for n in itertools.count())
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._creating = asyncio.Lock()  # viewers connect concurrently; one session for all

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self._http.post(url, json=body) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise SignallingFailed(f"janus: {reply.get('error')}")
        return reply

    async def _session(self) -> str:
        async with self._creating:
            if not self._session_url:
                reply = await self._post(
                    self.target.url, {"janus": "create", "transaction": next(self._transactions)}
                )
                self._session_url = f"{self.target.url}/{reply['data']['id']}"
                self._poller = asyncio.create_task(self._poll())
        return self._session_url

    async def _poll(self) -> None:
        """Long-poll the session's events (this also keeps the session alive)."""
        while True:
            async with self._http.get(self._session_url, params={"maxev": "10"}) as response:
                events = await response.json(content_type=None)
            for event in events if isinstance(events, list) else [events]:
                waiting = self._pending.pop(event.get("transaction", ""), None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(event)

    async def _attach(self) -> str:
        session = await self._session()
        reply = await self._post(
            session,
            {
                "janus": "attach",
                "plugin": "janus.plugin.videoroom",
                "transaction": next(self._transactions),
            },
        )
        return f"{session}/{reply['data']['id']}"

    async def _message(
        self, handle: str, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The plugin's answer to one request: at once (synchronous) or from the long poll."""
        transaction = next(self._transactions)
        message: dict[str, Any] = {"janus": "message", "transaction": transaction, "body": body}
        if jsep is not None:
            message["jsep"] = jsep
        event: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = event
        reply = await self._post(handle, message)
        if reply.get("janus") != "ack":
            self._pending.pop(transaction, None)
            event.set_result(reply)
        async with asyncio.timeout(EXCHANGE_SECONDS):
            answer = await event
        data = answer.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise SignallingFailed(f"janus videoroom {body['request']}: {data}")
        return answer

    async def publish(self, pc: RTCPeerConnection) -> None:
        await self.publish_feed(pc, JANUS_FEED, create_for=1)

    async def publish_feed(self, pc: RTCPeerConnection, feed: int, create_for: int = 0) -> None:
        """Publish `pc` as the room's feed `feed`; first create the room for `create_for`
        publishers, if given (one client makes it, before the others join)."""
        handle = await self._attach()
        room = int(self.target.room)
        if create_for:
            create = {
                "request": "create",
                "room": room,
                "publishers": create_for,
                "videocodec": "vp8",
                "audiocodec": "opus",
            }
            await self._message(handle, create)
        await self._message(
            handle, {"request": "join", "ptype": "publisher", "room": room, "id": feed}
        )
        answer = await self._message(handle, {"request": "publish"}, _jsep(await _offer(pc)))
        await pc.setRemoteDescription(_description(answer["jsep"]))

    async def watch(self, pc: RTCPeerConnection, name: str) -> None:
        await self.subscribe_feeds(pc, [JANUS_FEED])

    async def subscribe_feeds(self, pc: RTCPeerConnection, feeds: list[int]) -> None:
        """One subscriber handle for every stream of these feeds (Janus's multistream)."""
        handle = await self._attach()
        join = {
            "request": "join",
            "ptype": "subscriber",
            "room": int(self.target.room),
            "streams": [{"feed": feed} for feed in feeds],
        }
        offer = await self._message(handle, join)
        answer = await _answer(pc, _description(offer["jsep"]))
        await self._message(handle, {"request": "start"}, _jsep(answer))

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self._session_url:
            with contextlib.suppress(aiohttp.ClientError, SignallingFailed):
                await self._post(
                    self._session_url,
                    {"janus": "destroy", "transaction": next(self._transactions)},
                )


def signaller(target: Target, http: aiohttp.ClientSession) -> Signaller:
    kinds: dict[str, type[Signaller]] = {
        "sfu": SfuSignaller,
        "edges": SfuSignaller,
        "livekit": LiveKitSignaller,
        "janus": JanusSignaller,
        "relay": HttpSignaller,
        "direct": HttpSignaller,
    }
    return kinds[target.kind](target, http)
