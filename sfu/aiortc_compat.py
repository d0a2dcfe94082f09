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
  ``recv()`` never returns, so aiortc never creates an encoder for it. Packets get the
  sender's SSRC, payload type and header-extension IDs, are kept as sent so that NACKs
  (aiortc's handler calls our ``_retransmit``) are answered, as RTX when negotiated, and are
  encrypted with the DTLS transport's SRTP session and written to the selected ICE pair's
  datagram transport directly: the same steps as aiortc's ``_send_rtp``, without its three
  awaited layers per packet and subscriber (the SFU's main cost, `bench/sfu.py`). Keyframe
  requests (PLI/FIR) from the subscriber are routed to a callback instead of the (absent)
  encoder.

``tests/unit/test_sfu_aiortc_compat.py`` asserts each internal named in
:data:`RECEIVER_PRIVATE_ATTRS`, :data:`SENDER_PRIVATE_ATTRS` and the method signatures, so an
aiortc upgrade that changes them fails loudly in CI rather than silently in a lesson.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Hashable
from struct import pack_into
from typing import Any

from aiortc import RTCDtlsTransport, RTCRtpReceiver, RTCRtpSender, clock
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensionsMap, RtpPacket, wrap_rtx

__all__ = [
    "CONNECTION_PRIVATE_ATTRS",
    "DTLS_PRIVATE_ATTRS",
    "ICE_PRIVATE_ATTRS",
    "PAIR_ATTRS",
    "RECEIVER_PRIVATE_ATTRS",
    "ROUTER_PRIVATE_ATTRS",
    "ROUTER_TABLES",
    "RTP_HISTORY_SIZE",
    "SENDER_PRIVATE_ATTRS",
    "AiortcCompatError",
    "ForwardingSender",
    "RtpPacket",
    "SilentTrack",
    "WireCache",
    "audio_level",
    "current_ntp_time",
    "fix_bitrate_estimate",
    "request_keyframe",
    "route_rtp_by_mid",
    "set_msid",
    "tap_receiver",
]

#: What :meth:`ForwardingSender.send_packet` reads on the way out: the DTLS transport's state,
#: SRTP session and counters, its ICE transport's aioice connection, that connection's
#: selected pairs, and a pair's datagram protocol and remote address.
DTLS_PRIVATE_ATTRS = (
    "_state",
    "_tx_srtp",
    "_RTCDtlsTransport__tx_bytes",
    "_RTCDtlsTransport__tx_packets",
)
ICE_PRIVATE_ATTRS = ("_connection",)
CONNECTION_PRIVATE_ATTRS = ("_nominated",)
PAIR_ATTRS = ("protocol", "remote_addr")
#: What :func:`route_rtp_by_mid` reads: the DTLS transport's RTP router, and its tables.
ROUTER_PRIVATE_ATTRS = ("_rtp_router",)
ROUTER_TABLES = ("mid_table", "ssrc_table", "route_rtp")
#: Private ``RTCRtpReceiver`` attributes (name-mangled) that :func:`tap_receiver` and
#: :func:`fix_bitrate_estimate` replace.
RECEIVER_PRIVATE_ATTRS = (
    "_RTCRtpReceiver__jitter_buffer",
    "_RTCRtpReceiver__remote_bitrate_estimator",
)
#: Private ``RTCRtpSender`` attributes that :class:`ForwardingSender` and :func:`set_msid`
#: read or replace: the RTX SSRC and the retransmit hook answer NACKs; the counters feed the
#: sender reports; the stream and track IDs are what aiortc writes as the m-line's msid.
SENDER_PRIVATE_ATTRS = (
    "_stream_id",
    "_track_id",
    "_rtx_ssrc",
    "_retransmit",
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


def set_msid(sender: RTCRtpSender, stream_id: str, track_id: str) -> None:
    """Name the stream and track of ``sender``'s m-line (``a=msid:<stream> <track>``).

    aiortc offers no API for it and writes a random UUID of its own; LiveKit clients read the
    publisher and the track from it (``PA_x|TR_y TR_y``). Call after ``addTransceiver``,
    which sets the stream ID itself, and before the offer is made.
    """
    _require(sender, SENDER_PRIVATE_ATTRS[:2])
    sender._stream_id = stream_id
    sender._track_id = track_id


class _FixedEstimate:
    """Stands in for ``RemoteBitrateEstimator``: the same REMB value once a second."""

    def __init__(self, bitrate: int) -> None:
        self._bitrate = bitrate
        self._last_ms = -1000

    def add(
        self, abs_send_time: int, arrival_time_ms: int, payload_size: int, ssrc: int
    ) -> tuple[int, list[int]] | None:
        if arrival_time_ms - self._last_ms < 1000:
            return None
        self._last_ms = arrival_time_ms
        return self._bitrate, [ssrc]


def fix_bitrate_estimate(receiver: RTCRtpReceiver, bitrate: int) -> None:
    """Make a video receiver report ``bitrate`` (REMB) to its sender, whatever arrives.

    aiortc's estimator allows at most about 1.5 times the bitrate it receives: a publisher whose
    picture is still (a slide, a face in front of a wall) sends little, is allowed little, and
    its encoder drops to a low resolution it then leaves only slowly. A forwarding SFU instead
    gives each publisher a budget, as Janus's videoroom does; losses still make the sender
    back off, through the receiver reports aiortc keeps sending.
    """
    _require(receiver, RECEIVER_PRIVATE_ATTRS)
    if getattr(receiver, RECEIVER_PRIVATE_ATTRS[1]) is not None:  # None for audio
        setattr(receiver, RECEIVER_PRIVATE_ATTRS[1], _FixedEstimate(bitrate))


def route_rtp_by_mid(transport: RTCDtlsTransport) -> None:
    """Route RTP whose SSRC nobody announced by its MID header extension (RFC 8843).

    aiortc routes by the SSRCs of the offer, else by payload type when one receiver alone has
    it. A simulcast layer's SSRC is in no offer (`sfu.simulcast`), and a teacher's camera and
    screen share the VP8 payload type, so their packets would be dropped; the MID names the
    m-line they belong to. Once seen, the SSRC is remembered as aiortc itself does.
    """
    _require(transport, ROUTER_PRIVATE_ATTRS)
    router = transport._rtp_router
    _require(router, ROUTER_TABLES)
    if getattr(router, "_routes_by_mid", False):
        return
    by_ssrc_or_type = router.route_rtp

    def route(packet: RtpPacket) -> Any:
        mid = packet.extensions.mid
        if packet.ssrc not in router.ssrc_table and mid is not None:
            receiver = router.mid_table.get(mid)
            if receiver is not None:
                router.ssrc_table[packet.ssrc] = receiver
                return receiver
        return by_ssrc_or_type(packet)

    router.route_rtp = route  # type: ignore[method-assign]
    router._routes_by_mid = True  # type: ignore[attr-defined]


def current_ntp_time() -> int:
    """Now as a 64-bit NTP timestamp, as aiortc's sender reports and abs-send-time use it."""
    return clock.current_ntp_time()


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


#: Serialized packets of one incoming packet, by the shape of the outgoing stream: every
#: subscriber of the same kind usually negotiated the same shape, so the bytes are built once
#: and only the sequence number, timestamp and SSRC are patched per subscriber.
WireCache = dict[Hashable, bytes]


def _write_rtp(dtls: RTCDtlsTransport, data: bytes) -> bool:
    """Encrypt and send one RTP packet as ``RTCDtlsTransport._send_rtp`` does; False if the
    transport is not connected (yet, or any more)."""
    if dtls._state != DtlsState.CONNECTED:
        return False
    pair = dtls.transport._connection._nominated.get(1)  # RTP is ICE component 1
    if pair is None:
        return False
    protected = dtls._tx_srtp.protect(data)
    pair.protocol.transport.sendto(protected, pair.remote_addr)
    dtls._RTCDtlsTransport__tx_bytes += len(protected)  # type: ignore[attr-defined]
    dtls._RTCDtlsTransport__tx_packets += 1  # type: ignore[attr-defined]
    return True


class ForwardingSender:
    """Writes already-encoded RTP packets through a subscriber's ``RTCRtpSender``.

    Attach before negotiation: the codec, MID and header-extension IDs are captured when
    the peer connection calls ``sender.send(parameters)``. Packets sent earlier are dropped.
    The last :data:`RTP_HISTORY_SIZE` packets are kept as sent (plain bytes) to answer NACKs:
    aiortc's handler calls ``_retransmit``, which is ours here, and a packet is parsed again
    only when it is asked for (as RTX when negotiated).
    """

    def __init__(self, sender: RTCRtpSender, on_keyframe_request: Callable[[], None]) -> None:
        _require(sender, SENDER_PRIVATE_ATTRS)
        self.sender = sender
        self.ssrc = int(sender._ssrc)
        self.payload_type: int | None = None
        self.mime_type: str | None = None  # the negotiated codec, e.g. video/VP8
        self._rtx_payload_type: int | None = None
        self._rtx_sequence_number = secrets.randbelow(1 << 15)  # as aiortc starts its own
        self._mid: str | None = None
        self._extensions = HeaderExtensionsMap()
        self._shape: Hashable = None
        self._history: dict[int, tuple[int, bytes]] = {}  # seq % size -> (seq, packet)
        # aiortc's _handle_rtcp_packet calls self._send_keyframe() on PLI/FIR and
        # self._retransmit(seq) for each NACKed packet.
        sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]
        sender._retransmit = self._retransmit  # type: ignore[method-assign]
        original_send = sender.send

        async def send(parameters: RTCRtpSendParameters) -> None:
            codec = parameters.codecs[0]
            self.payload_type = codec.payloadType
            self.mime_type = codec.mimeType
            self._rtx_payload_type = next(
                (
                    c.payloadType
                    for c in parameters.codecs
                    if is_rtx(c) and c.parameters.get("apt") == codec.payloadType
                ),
                None,
            )
            self._mid = parameters.muxId
            self._extensions.configure(parameters)
            extensions = tuple((e.uri, e.id) for e in parameters.headerExtensions)
            self._shape = (self.payload_type, self._mid, extensions)
            await original_send(parameters)

        sender.send = send  # type: ignore[method-assign]

    def send_packet(
        self,
        source: RtpPacket,
        sequence_number: int,
        timestamp: int,
        ntp_time: int,
        wire: WireCache,
    ) -> bool:
        """Send ``source``'s payload as our stream's packet; False if not negotiated yet.

        ``ntp_time`` is now (`clock.current_ntp_time`), taken once per incoming packet;
        ``wire`` is that packet's :data:`WireCache`, shared by all its outlets: the first
        outlet of a shape serializes, the others copy and patch the header.
        """
        if self.payload_type is None:
            return False
        template = wire.get(self._shape)
        if template is None:
            packet = RtpPacket(
                payload_type=self.payload_type,
                marker=source.marker,
                sequence_number=sequence_number,
                timestamp=timestamp,
                ssrc=self.ssrc,
                payload=source.payload,
            )
            packet.extensions.mid = self._mid
            packet.extensions.abs_send_time = (ntp_time >> 14) & 0x00FFFFFF
            packet.extensions.audio_level = source.extensions.audio_level
            data = wire[self._shape] = packet.serialize(self._extensions)
        else:
            patched = bytearray(template)
            pack_into("!HLL", patched, 2, sequence_number, timestamp, self.ssrc)
            data = bytes(patched)
        self._history[sequence_number % RTP_HISTORY_SIZE] = (sequence_number, data)
        sender = self.sender
        if not _write_rtp(sender.transport, data):
            return False
        # What aiortc's sender reports (RTCP SR) are made of: lip sync, RTT, counts.
        sender._RTCRtpSender__ntp_timestamp = ntp_time  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtp_timestamp = timestamp  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count += len(source.payload)  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count += 1  # type: ignore[attr-defined]
        return True

    async def _retransmit(self, sequence_number: int) -> None:
        """Send a NACKed packet again, as aiortc's own ``_retransmit`` would."""
        stored = self._history.get(sequence_number % RTP_HISTORY_SIZE)
        if stored is None or stored[0] != sequence_number:
            return  # too old: overwritten by a newer packet
        data = stored[1]
        if self._rtx_payload_type is not None:
            rtx = wrap_rtx(
                RtpPacket.parse(data, self._extensions),
                payload_type=self._rtx_payload_type,
                sequence_number=self._rtx_sequence_number,
                ssrc=self.sender._rtx_ssrc,
            )
            self._rtx_sequence_number = (self._rtx_sequence_number + 1) % (1 << 16)
            data = rtx.serialize(self._extensions)
        _write_rtp(self.sender.transport, data)
