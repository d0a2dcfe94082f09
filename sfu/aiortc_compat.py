"""Every use of aiortc internals in the SFU lives here.

aiortc has no API for forwarding media without decoding it (its receive path always feeds
a decoder, and stock ``MediaRelay`` makes every subscriber's sender encode its own copy).
We therefore hook into private attributes at exactly two places:

* **Receive side:** the receiver's jitter buffer is replaced by a :class:`_PacketTap`.
  aiortc's own ``_handle_rtp_packet`` still does the useful work (RTCP statistics for
  receiver reports, REMB, RTX unwrapping, NACK generation towards the publisher) and then
  hands each packet to the "jitter buffer", which here keeps it and never returns a frame.
  No frame ever reaches the decoder thread, so no decoder is created, and no jitter buffer
  holds a frame back (that would add one frame interval of latency per hop).
* **Send side:** a subscriber's ``RTCRtpSender`` is given a :class:`SilentTrack` whose
  ``recv()`` never returns, so aiortc never creates an encoder for it. Packets are written
  straight to the sender's DTLS transport with the sender's SSRC, payload type and
  header-extension IDs, and recorded in the sender's RTP history so aiortc's own NACK
  handler can retransmit them (as RTX when negotiated). Keyframe requests (PLI/FIR) from the
  subscriber are routed to a callback instead of the (absent) encoder.

``tests/unit/test_sfu_aiortc_compat.py`` asserts each internal named in
:data:`RECEIVER_PRIVATE_ATTRS`, :data:`SENDER_PRIVATE_ATTRS` and the method signatures, so an
aiortc upgrade that changes them fails loudly in CI rather than silently in a lesson.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender, clock
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensionsMap, RtpPacket

__all__ = [
    "RECEIVER_PRIVATE_ATTRS",
    "RTP_HISTORY_SIZE",
    "SENDER_PRIVATE_ATTRS",
    "AiortcCompatError",
    "ForwardingSender",
    "RtpPacket",
    "SilentTrack",
    "audio_level",
    "request_keyframe",
    "tap_receiver",
]

#: Private ``RTCRtpReceiver`` attributes (name-mangled) that :func:`tap_receiver` replaces.
RECEIVER_PRIVATE_ATTRS = ("_RTCRtpReceiver__jitter_buffer",)
#: Private ``RTCRtpSender`` attributes that :class:`ForwardingSender` reads or updates:
#: the RTP history answers NACKs; the counters feed the sender reports (RTT, lip sync).
SENDER_PRIVATE_ATTRS = (
    "_RTCRtpSender__rtp_history",
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__octet_count",
    "_RTCRtpSender__packet_count",
)

PacketHandler = Callable[[RtpPacket], Awaitable[None]]


class AiortcCompatError(RuntimeError):
    """The installed aiortc no longer has an internal this module relies on."""


def _require(obj: object, names: tuple[str, ...]) -> None:
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        raise AiortcCompatError(f"{type(obj).__name__} lacks {missing}; aiortc changed")


class _PacketTap:
    """Stands in for ``JitterBuffer``: keeps packets for forwarding, never yields a frame."""

    def __init__(self) -> None:
        self.pending: list[RtpPacket] = []

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.pending.append(packet)
        return False, None


def tap_receiver(receiver: RTCRtpReceiver, on_packet: PacketHandler) -> None:
    """Send every RTP packet the receiver accepts to ``on_packet`` instead of the decoder.

    Packets arrive after RTX unwrapping, so retransmissions the SFU requested from the
    publisher are forwarded too (late, out of order; the rewriter keeps their order).
    """
    _require(receiver, RECEIVER_PRIVATE_ATTRS)
    tap = _PacketTap()
    setattr(receiver, RECEIVER_PRIVATE_ATTRS[0], tap)
    original = receiver._handle_rtp_packet

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        await original(packet, arrival_time_ms)
        pending, tap.pending = tap.pending, []
        for accepted in pending:
            await on_packet(accepted)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


async def request_keyframe(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Send a PLI for ``media_ssrc`` to whoever sends to ``receiver``."""
    await receiver._send_rtcp_pli(media_ssrc)


def audio_level(packet: RtpPacket) -> int | None:
    """The RFC 6464 level in -dBov (0 loudest, 127 silence), if the packet carries one."""
    level = packet.extensions.audio_level
    if level is None:
        return None
    return int(level[1])


class SilentTrack(MediaStreamTrack):
    """A track whose ``recv()`` waits until stopped, so its sender never encodes."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._stopped = asyncio.Event()

    async def recv(self) -> Any:
        await self._stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._stopped.set()


class ForwardingSender:
    """Writes already-encoded RTP packets through a subscriber's ``RTCRtpSender``.

    Attach before negotiation: the codec, MID and header-extension IDs are captured when
    the peer connection calls ``sender.send(parameters)``. Packets sent earlier are dropped.
    """

    def __init__(self, sender: RTCRtpSender, on_keyframe_request: Callable[[], None]) -> None:
        _require(sender, SENDER_PRIVATE_ATTRS)
        self.sender = sender
        self.payload_type: int | None = None
        self._mid: str | None = None
        self._extensions = HeaderExtensionsMap()
        # aiortc's _handle_rtcp_packet calls self._send_keyframe() on PLI/FIR.
        sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]
        original_send = sender.send

        async def send(parameters: RTCRtpSendParameters) -> None:
            self.payload_type = parameters.codecs[0].payloadType
            self._mid = parameters.muxId
            self._extensions.configure(parameters)
            await original_send(parameters)

        sender.send = send  # type: ignore[method-assign]

    @property
    def ssrc(self) -> int:
        return int(self.sender._ssrc)

    async def send_packet(self, source: RtpPacket, sequence_number: int, timestamp: int) -> bool:
        """Send ``source``'s payload as our stream's packet; False if not negotiated yet."""
        if self.payload_type is None:
            return False
        packet = RtpPacket(
            payload_type=self.payload_type,
            marker=source.marker,
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=self.ssrc,
            payload=source.payload,
        )
        packet.extensions.mid = self._mid
        packet.extensions.abs_send_time = (clock.current_ntp_time() >> 14) & 0x00FFFFFF
        packet.extensions.audio_level = source.extensions.audio_level
        sender = self.sender
        history: dict[int, RtpPacket] = sender._RTCRtpSender__rtp_history  # type: ignore[attr-defined]
        history[sequence_number % RTP_HISTORY_SIZE] = packet
        try:
            await sender.transport._send_rtp(packet.serialize(self._extensions))
        except ConnectionError:
            return False
        sender._RTCRtpSender__ntp_timestamp = clock.current_ntp_time()  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtp_timestamp = timestamp  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count += len(packet.payload)  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count += 1  # type: ignore[attr-defined]
        return True
