"""Pins the aiortc internals sfu.aiortc_compat relies on.

If any test here fails after an aiortc upgrade, do not patch the test: re-read the new
aiortc receive/send path and adapt sfu/aiortc_compat.py, since forwarding silently breaking
(or silently starting to decode) is the failure these tests exist to prevent.
"""

from __future__ import annotations

import inspect
from typing import Any

import aioice
import aioice.ice
import pytest
from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    rtcdtlstransport,
    rtcicetransport,
    rtcrtpreceiver,
    rtp,
)
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters

from sfu import aiortc_compat


class FakeTransport:
    state = "new"


@pytest.fixture
async def receiver() -> RTCRtpReceiver:
    return RTCRtpReceiver("video", FakeTransport())  # type: ignore[arg-type]


@pytest.fixture
async def sender() -> RTCRtpSender:
    return RTCRtpSender("audio", FakeTransport())  # type: ignore[arg-type]


def params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


async def test_receiver_private_attributes_exist(receiver: RTCRtpReceiver) -> None:
    for name in aiortc_compat.RECEIVER_PRIVATE_ATTRS:
        assert hasattr(receiver, name), name
    assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, JitterBuffer)  # type: ignore[attr-defined]


def test_receive_path_hands_packets_to_jitter_buffer_then_decoder() -> None:
    source = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    # RTX is unwrapped and NACKs are generated before the buffer; only frames it returns
    # are queued for decoding. The tap relies on exactly this order.
    assert source.index("unwrap_rtx") < source.index("self.__jitter_buffer.add(packet)")
    assert source.index("_send_rtcp_nack") < source.index("self.__jitter_buffer.add(packet)")
    assert "pli_flag, encoded_frame = self.__jitter_buffer.add(packet)" in source
    assert "if encoded_frame is not None" in source
    assert params(RTCRtpReceiver._handle_rtp_packet) == ["self", "packet", "arrival_time_ms"]
    assert params(RTCRtpReceiver._send_rtcp_pli) == ["self", "media_ssrc"]


def test_transport_dispatches_through_instance_attributes() -> None:
    # Instance-level overrides only work if the transport looks the methods up per call.
    rtp_source = inspect.getsource(rtcdtlstransport.RTCDtlsTransport._handle_rtp_data)
    assert "receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)" in rtp_source
    rtcp_source = inspect.getsource(rtcdtlstransport.RTCDtlsTransport._handle_rtcp_data)
    assert "recipient._handle_rtcp_packet(packet)" in rtcp_source
    assert params(rtcdtlstransport.RTCDtlsTransport._send_rtp) == ["self", "data"]


async def test_sender_private_attributes_exist(sender: RTCRtpSender) -> None:
    for name in aiortc_compat.SENDER_PRIVATE_ATTRS:
        assert hasattr(sender, name), name
    assert isinstance(sender._ssrc, int) and isinstance(sender._rtx_ssrc, int)


def test_sender_rtcp_handling_uses_hooks_we_replace() -> None:
    source = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "self._send_keyframe()" in source
    assert "await self._retransmit(seq)" in source
    retransmit = inspect.getsource(RTCRtpSender._retransmit)
    assert "self.__rtp_history.get(sequence_number % RTP_HISTORY_SIZE)" in retransmit
    run_rtp = inspect.getsource(RTCRtpSender._run_rtp)
    assert "await self._next_encoded_frame(codec)" in run_rtp
    next_frame = inspect.getsource(RTCRtpSender._next_encoded_frame)
    # The encoder is only created after track.recv() returned, so SilentTrack prevents it.
    assert next_frame.index("self.__track.recv()") < next_frame.index("get_encoder(codec)")
    assert params(RTCRtpSender.send) == ["self", "parameters"]


def test_decoder_only_created_for_queued_frames() -> None:
    worker = inspect.getsource(rtcrtpreceiver.decoder_worker)
    assert worker.index("input_q.get()") < worker.index("get_decoder(codec)")


def test_rtp_packet_and_extensions_shape() -> None:
    assert params(rtp.RtpPacket.__init__) == [
        "self",
        "payload_type",
        "marker",
        "sequence_number",
        "timestamp",
        "ssrc",
        "payload",
    ]
    extensions = rtp.HeaderExtensions()
    for name in ("mid", "abs_send_time", "audio_level"):
        assert hasattr(extensions, name)
    assert params(rtp.RtpPacket.serialize) == ["self", "extensions_map"]
    assert params(rtp.HeaderExtensionsMap.configure) == ["self", "parameters"]
    assert rtp.RTP_HISTORY_SIZE == aiortc_compat.RTP_HISTORY_SIZE


async def test_tap_keeps_packets_and_never_yields_frames(receiver: RTCRtpReceiver) -> None:
    seen: list[rtp.RtpPacket] = []

    async def on_packet(packet: rtp.RtpPacket) -> None:
        seen.append(packet)

    aiortc_compat.tap_receiver(receiver, on_packet)
    tap = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    packet = rtp.RtpPacket(sequence_number=1)
    assert tap.add(packet) == (False, None)
    assert tap.pending == [packet]


async def test_forwarding_sender_routes_keyframe_requests(sender: RTCRtpSender) -> None:
    requests: list[int] = []
    aiortc_compat.ForwardingSender(sender, lambda: requests.append(1))
    pli = rtp.RtcpPsfbPacket(fmt=rtp.RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc)
    await sender._handle_rtcp_packet(pli)
    assert requests == [1]


async def test_missing_internal_fails_loudly() -> None:
    async def on_packet(packet: rtp.RtpPacket) -> None:
        raise AssertionError

    with pytest.raises(aiortc_compat.AiortcCompatError):
        aiortc_compat.tap_receiver(object(), on_packet)  # type: ignore[arg-type]


def test_audio_level_reads_rfc6464_extension() -> None:
    packet = rtp.RtpPacket()
    assert aiortc_compat.audio_level(packet) is None
    packet.extensions.audio_level = (True, 42)
    assert aiortc_compat.audio_level(packet) == 42


def test_silent_track_is_a_media_stream_track() -> None:
    track = aiortc_compat.SilentTrack("video")
    assert track.kind == "video"
    track.stop()
    assert track.readyState == "ended"


def test_direct_rtp_write_repeats_aiortcs_send_path() -> None:
    """`_write_rtp` does what `_send_rtp` → ICE → aioice do, minus the awaits: pin each step."""
    dtls_send = inspect.getsource(rtcdtlstransport.RTCDtlsTransport._send_rtp)
    assert "if self._state != State.CONNECTED" in dtls_send
    assert "data = self._tx_srtp.protect(data)" in dtls_send
    assert "await self.transport._send(data)" in dtls_send
    assert "self.__tx_bytes += len(data)" in dtls_send
    assert "self.__tx_packets += 1" in dtls_send
    ice_start = inspect.getsource(rtcicetransport.RTCIceTransport)
    assert "self._send = self._connection.send" in ice_start
    assert "await self.sendto(data, 1)" in inspect.getsource(aioice.Connection.send)
    sendto = inspect.getsource(aioice.Connection.sendto)
    assert "active_pair = self._nominated.get(component)" in sendto
    assert "await active_pair.protocol.send_data(data, active_pair.remote_addr)" in sendto
    send_data = inspect.getsource(aioice.ice.StunProtocol.send_data)
    assert "self.transport.sendto(data, addr)" in send_data
    pair_source = inspect.getsource(aioice.ice.CandidatePair)
    for name in aiortc_compat.PAIR_ATTRS:
        assert f"def {name}" in pair_source or f"self.{name} =" in pair_source, name
    assert aiortc_compat.ICE_PRIVATE_ATTRS == ("_connection",)
    assert aiortc_compat.CONNECTION_PRIVATE_ATTRS == ("_nominated",)
    assert set(aiortc_compat.DTLS_PRIVATE_ATTRS) <= {
        "_state",
        "_tx_srtp",
        "_RTCDtlsTransport__tx_bytes",
        "_RTCDtlsTransport__tx_packets",
    }


async def negotiated_elsewhere(parameters: RTCRtpSendParameters) -> None:
    """Stands in for aiortc's own `send`, which would start RTP and RTCP tasks."""


async def test_packets_are_patched_per_subscriber_and_nacks_answered_as_rtx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written: list[bytes] = []

    def write(dtls: object, data: bytes) -> bool:
        written.append(data)
        return True

    monkeypatch.setattr(aiortc_compat, "_write_rtp", write)
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    rtx = RTCRtpCodecParameters(
        mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
    )
    senders = [RTCRtpSender("video", FakeTransport()) for _ in "ab"]  # type: ignore[arg-type]
    for sender in senders:
        sender.send = negotiated_elsewhere  # type: ignore[method-assign]
    forwarders = [aiortc_compat.ForwardingSender(s, lambda: None) for s in senders]
    for sender in senders:
        await sender.send(RTCRtpSendParameters(codecs=[vp8, rtx], muxId="0"))
    source = rtp.RtpPacket(payload_type=100, marker=1, sequence_number=5, payload=b"frame")
    wire: aiortc_compat.WireCache = {}
    assert forwarders[0].send_packet(source, 1000, 9000, 0, wire)
    assert forwarders[1].send_packet(source, 2000, 8000, 0, wire)  # from the template
    first, second = (rtp.RtpPacket.parse(data) for data in written)
    for packet, (seq, ts, sender) in zip(
        (first, second), ((1000, 9000, senders[0]), (2000, 8000, senders[1])), strict=True
    ):
        assert (packet.sequence_number, packet.timestamp) == (seq, ts)
        assert (packet.ssrc, packet.payload_type, packet.marker) == (sender._ssrc, 96, 1)
        assert packet.payload == b"frame"
    written.clear()
    nack = rtp.RtcpRtpfbPacket(fmt=rtp.RTCP_RTPFB_NACK, ssrc=1, media_ssrc=senders[1]._ssrc)
    nack.lost = [2000, 1999]  # 1999 was never sent: nothing
    await senders[1]._handle_rtcp_packet(nack)
    [again] = (rtp.RtpPacket.parse(data) for data in written)
    assert (again.payload_type, again.ssrc) == (97, senders[1]._rtx_ssrc)
    assert again.payload == (2000).to_bytes(2, "big") + b"frame"  # RFC 4588: OSN first


async def test_msid_is_what_the_offer_names() -> None:
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("audio", direction="sendonly")
        aiortc_compat.set_msid(transceiver.sender, "PA_a|TR_b", "TR_b")
        await pc.setLocalDescription(await pc.createOffer())
        assert "a=msid:PA_a|TR_b TR_b" in pc.localDescription.sdp
    finally:
        await pc.close()


async def test_the_bitrate_estimate_is_fixed_for_video_only() -> None:
    video = RTCRtpReceiver("video", FakeTransport())  # type: ignore[arg-type]
    audio = RTCRtpReceiver("audio", FakeTransport())  # type: ignore[arg-type]
    aiortc_compat.fix_bitrate_estimate(video, 2_500_000)
    aiortc_compat.fix_bitrate_estimate(audio, 2_500_000)
    assert getattr(audio, aiortc_compat.RECEIVER_PRIVATE_ATTRS[1]) is None
    estimate = getattr(video, aiortc_compat.RECEIVER_PRIVATE_ATTRS[1])
    # aiortc sends a REMB whenever add() returns one: once a second, the budget.
    assert estimate.add(abs_send_time=0, arrival_time_ms=0, payload_size=1200, ssrc=7) == (
        2_500_000,
        [7],
    )
    assert estimate.add(abs_send_time=0, arrival_time_ms=500, payload_size=1200, ssrc=7) is None
    assert estimate.add(abs_send_time=0, arrival_time_ms=1000, payload_size=9, ssrc=7) == (
        2_500_000,
        [7],
    )
    # ... which is where aiortc's receive path calls it.
    handle = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "remb = self.__remote_bitrate_estimator.add(" in handle


def test_rtp_router_shape_for_routing_by_mid() -> None:
    router = rtcdtlstransport.RtpRouter()
    for name in aiortc_compat.ROUTER_TABLES:
        assert hasattr(router, name), name
    assert params(rtcdtlstransport.RtpRouter.route_rtp) == ["self", "packet"]
    handle = inspect.getsource(rtcdtlstransport.RTCDtlsTransport._handle_rtp_data)
    assert "self._rtp_router.route_rtp(packet)" in handle


def test_unannounced_ssrcs_are_routed_by_their_mid() -> None:
    transport = rtcdtlstransport.RTCDtlsTransport.__new__(rtcdtlstransport.RTCDtlsTransport)
    transport._rtp_router = rtcdtlstransport.RtpRouter()
    camera, screen = object(), object()
    # Both VP8 (96): by payload type alone, neither could be told apart.
    transport._rtp_router.register_receiver(camera, ssrcs=[], payload_types=[96], mid="1")  # type: ignore[arg-type]
    transport._rtp_router.register_receiver(screen, ssrcs=[], payload_types=[96], mid="2")  # type: ignore[arg-type]
    aiortc_compat.route_rtp_by_mid(transport)
    aiortc_compat.route_rtp_by_mid(transport)  # once is enough; twice changes nothing

    def packet(ssrc: int, mid: str | None) -> rtp.RtpPacket:
        sent = rtp.RtpPacket(payload_type=96, ssrc=ssrc)
        sent.extensions.mid = mid
        return sent

    router = transport._rtp_router
    assert router.route_rtp(packet(1111, "2")) is screen
    assert router.route_rtp(packet(2222, "1")) is camera
    # Later packets of those streams carry no MID (browsers stop sending it): the SSRC is known.
    assert router.route_rtp(packet(1111, None)) is screen
    assert router.route_rtp(packet(3333, None)) is None  # unknown, ambiguous: dropped
