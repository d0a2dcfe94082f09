"""Keyframe starts, read from payloads that aiortc's own VP8 and H.264 encoders packetized."""

from __future__ import annotations

import fractions

import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av import VideoFrame

from sfu.keyframes import starts_keyframe

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
H264 = RTCRtpCodecParameters(
    mimeType="video/H264",
    clockRate=90000,
    payloadType=102,
    parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
)


def frames(count: int) -> list[VideoFrame]:
    made = []
    for i in range(count):
        frame = VideoFrame(width=320, height=240)
        for plane in frame.planes:
            plane.update(bytes([(i * 40) % 256]) * plane.buffer_size)
        frame.pts, frame.time_base = i * 3000, fractions.Fraction(1, 90000)
        made.append(frame)
    return made


@pytest.mark.parametrize("codec", [VP8, H264], ids=["vp8", "h264"])
def test_only_the_first_packet_of_a_keyframe_starts_one(codec: RTCRtpCodecParameters) -> None:
    encoder = get_encoder(codec)
    key, delta, forced = (
        encoder.encode(frame, force_keyframe=force)[0]
        for frame, force in zip(frames(3), (True, False, True), strict=True)
    )
    assert starts_keyframe(codec.mimeType, key[0])
    assert not starts_keyframe(codec.mimeType, delta[0])
    assert starts_keyframe(codec.mimeType, forced[0])
    for later in key[1:]:  # the rest of the keyframe continues it, it does not start one
        assert not starts_keyframe(codec.mimeType, later)


@pytest.mark.parametrize(
    ("mime", "payload", "expected"),
    [
        ("video/VP8", b"", False),
        ("video/VP8", bytes([0x10, 0x00]), True),  # S=1, PID=0, P=0: no extension
        ("video/VP8", bytes([0x10, 0x01]), False),  # P=1: an interframe
        ("video/VP8", bytes([0x00, 0x00]), False),  # not the start of a partition
        ("video/VP8", bytes([0x11, 0x00]), False),  # partition 1
        ("video/VP8", bytes([0x90, 0x80, 0x81, 0x23, 0x00]), True),  # X, I with 15-bit ID
        ("video/VP8", bytes([0x90, 0x80]), False),  # cut short
        ("video/H264", bytes([0x65]), True),  # an IDR slice
        ("video/H264", bytes([0x41]), False),  # a non-IDR slice
        ("video/H264", bytes([0x78, 0x00, 0x01, 0x67, 0x00, 0x01, 0x68]), True),  # STAP-A: SPS
        ("video/H264", bytes([0x7C, 0x85]), True),  # FU-A start of an IDR
        ("video/H264", bytes([0x7C, 0x05]), False),  # FU-A middle of an IDR
        ("audio/opus", b"\x00", True),  # not video: never held back
    ],
)
def test_payload_headers(mime: str, payload: bytes, expected: bool) -> None:
    assert starts_keyframe(mime, payload) is expected
