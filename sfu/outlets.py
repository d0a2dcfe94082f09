"""The two ends of a forwarded stream, shared by both routers (:mod:`sfu.forwarding` for our
own call page, :mod:`sfu.livekit.media` for LiveKit clients).

An :class:`Inbound` is one published track as it arrives: its receiver is tapped before any
decoder exists, and it is where keyframe requests go. An :class:`Outlet` is one subscriber
sender: packets are written through it with a rewritten header, and a video outlet given a
new source forwards nothing until that source's next keyframe starts (`sfu.keyframes`): what
comes before it could not be decoded.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

import attrs
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)

from sfu import aiortc_compat, codecs
from sfu.aiortc_compat import ForwardingSender, RtpPacket, SilentTrack, WireCache
from sfu.keyframes import starts_keyframe
from sfu.rewriting import SequenceRewriter

#: Keyframe requests to one publisher are coalesced to at most one per this interval:
#: every new subscriber and every lossy one asks, and a keyframe is expensive.
KEYFRAME_REQUEST_INTERVAL = 0.5
CLOCK_RATES = {"audio": 48000, "video": 90000}


@attrs.define(eq=False)
class Inbound:
    """One published track as it arrives; ``participant`` is whose connection carries it."""

    participant: str
    kind: str
    receiver: RTCRtpReceiver
    media_ssrc: int | None = None
    last_keyframe_request: float = float("-inf")

    async def request_keyframe(self, now: float) -> None:
        """A PLI to the publisher, at most one per :data:`KEYFRAME_REQUEST_INTERVAL`."""
        if self.media_ssrc is None:
            return  # nothing arrived yet: the first packets will be a keyframe anyway
        if now - self.last_keyframe_request < KEYFRAME_REQUEST_INTERVAL:
            return
        self.last_keyframe_request = now
        await aiortc_compat.request_keyframe(self.receiver, self.media_ssrc)


class Sent(enum.Enum):
    SENT = enum.auto()
    DROPPED = enum.auto()  # not negotiated or connected yet, or a straggler of an old source
    WAITING_FOR_KEYFRAME = enum.auto()  # the caller asks the source for one


S = TypeVar("S", bound=Inbound)


@attrs.define(eq=False)
class Outlet(Generic[S]):
    """One subscriber sender: which source feeds it now and how headers are rewritten."""

    forwarder: ForwardingSender
    rewriter: SequenceRewriter
    video: bool
    source: S | None = None
    awaiting_keyframe: bool = False

    def feed(self, source: S | None) -> None:
        self.source = source
        self.awaiting_keyframe = self.video and source is not None

    def send(self, packet: RtpPacket, now: float, ntp_time: int, wire: WireCache) -> Sent:
        """Forward one packet of the current source (``wire``: that packet's shared bytes)."""
        if self.awaiting_keyframe:
            mime_type = self.forwarder.mime_type
            if mime_type is None:
                return Sent.DROPPED
            if not starts_keyframe(mime_type, packet.payload):
                return Sent.WAITING_FOR_KEYFRAME
            self.awaiting_keyframe = False
        header = self.rewriter.rewrite(packet.ssrc, packet.sequence_number, packet.timestamp, now)
        if header is not None and self.forwarder.send_packet(
            packet, header.sequence_number, header.timestamp, ntp_time, wire
        ):
            return Sent.SENT
        return Sent.DROPPED


def peer_connection(ice_servers: list[RTCIceServer]) -> RTCPeerConnection:
    """A connection whose media share one transport (max-bundle, as every browser can).

    With aiortc's default (balanced) policy, an answer bundling everything onto the first
    m-line moves only the first audio transceiver: a subscriber's second and third speaker
    slots would stay on a transport that never connects (silence).
    """
    return RTCPeerConnection(
        RTCConfiguration(iceServers=ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


async def answer(pc: RTCPeerConnection, offer: RTCSessionDescription) -> RTCSessionDescription:
    """Answer a publisher's offer with the forwarded codecs pinned and the encoder's start
    bitrate (`sfu.codecs`)."""
    codecs.expect_pinned(pc, offer)
    await pc.setRemoteDescription(offer)
    await pc.setLocalDescription(await pc.createAnswer())
    return RTCSessionDescription(
        sdp=codecs.with_start_bitrate(pc.localDescription.sdp), type="answer"
    )


def add_outlet(
    pc: RTCPeerConnection,
    kind: str,
    source: S | None,
    on_keyframe_request: Callable[[Outlet[S]], None],
) -> Outlet[S]:
    """A new send-only transceiver on ``pc``, pinned to the forwarded codec, as an outlet.

    Its ``aiortc`` sender never encodes (:class:`SilentTrack`); a keyframe request from the
    subscriber (PLI/FIR) calls ``on_keyframe_request`` with the outlet.
    """
    transceiver = pc.addTransceiver(SilentTrack(kind), direction="sendonly")
    codecs.pin(transceiver)
    outlet: Outlet[S]
    forwarder = ForwardingSender(transceiver.sender, lambda: on_keyframe_request(outlet))
    rewriter = SequenceRewriter.starting(forwarder.ssrc, CLOCK_RATES[kind])
    outlet = Outlet(forwarder, rewriter, video=kind == "video")
    outlet.feed(source)
    return outlet


class Background:
    """Tasks started from synchronous aiortc callbacks, kept until done (asyncio holds only
    weak references to tasks)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
