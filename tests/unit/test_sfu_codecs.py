"""The SFU's codec choices: one forwarded codec per kind, and the encoder's start bitrate."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription

from sfu import codecs
from sfu.outlets import answer

ANSWER_LINES = [
    "v=0",
    "m=video 9 UDP/TLS/RTP/SAVPF 97 98 99",
    "a=rtpmap:97 VP8/90000",
    "a=rtpmap:98 rtx/90000",
    "a=fmtp:98 apt=97",
    "a=rtpmap:99 vp8/90000",
    "a=fmtp:99 max-fr=30",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "a=rtpmap:111 opus/48000/2",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "",
]


def test_every_vp8_payload_type_gets_the_start_bitrate_and_nothing_else_changes() -> None:
    hinted = codecs.with_start_bitrate("\r\n".join(ANSWER_LINES), 1500).split("\r\n")
    assert hinted == [
        "v=0",
        "m=video 9 UDP/TLS/RTP/SAVPF 97 98 99",
        "a=rtpmap:97 VP8/90000",
        "a=fmtp:97 x-google-start-bitrate=1500",
        "a=rtpmap:98 rtx/90000",
        "a=fmtp:98 apt=97",
        "a=rtpmap:99 vp8/90000",
        "a=fmtp:99 max-fr=30;x-google-start-bitrate=1500",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "",
    ]


def test_a_description_without_vp8_is_unchanged() -> None:
    audio_only = "\r\n".join([ANSWER_LINES[0], *ANSWER_LINES[7:]])
    assert codecs.with_start_bitrate(audio_only) == audio_only


@pytest.mark.parametrize("kinds", [("audio", "video"), ("video",)])
async def test_the_answer_to_a_publisher_tells_its_encoder_where_to_start(
    kinds: tuple[str, ...],
) -> None:
    """aiortc plays the publisher: its offer, our answer, parsed back as SDP."""
    publisher, sfu = RTCPeerConnection(), RTCPeerConnection()
    try:
        for kind in kinds:
            publisher.addTransceiver(kind, direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        answered = await answer(sfu, publisher.localDescription)
        video = next(m for m in SessionDescription.parse(answered.sdp).media if m.kind == "video")
        [vp8] = [c for c in video.rtp.codecs if c.mimeType == "video/VP8"]
        assert vp8.parameters == {"x-google-start-bitrate": str(codecs.START_BITRATE_KBPS)}
        # The publisher accepts it as its remote description.
        await publisher.setRemoteDescription(RTCSessionDescription(answered.sdp, "answer"))
    finally:
        await publisher.close()
        await sfu.close()
