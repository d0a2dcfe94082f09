"""One codec per kind on every connection of the SFU: VP8 for video, Opus for audio.

The SFU forwards payloads as they come and never transcodes, so a subscriber must have
negotiated the very codec its publishers send. Left alone, each connection would pick its own:
Safari offers H.264 before VP8, and aiortc's answer follows the offer's order, so an iPad
teacher would send H.264 into outlets whose subscribers expect VP8. Pinning every transceiver,
ours in offers and the publisher's in answers, makes the choice once for the whole SFU.
VP8 because every browser and aiortc have it, and `sfu.keyframes` reads its headers.
"""

from __future__ import annotations

from collections import Counter

from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription
from aiortc.sdp import SessionDescription

FORWARDED = {"video": ("video/vp8", "video/rtx"), "audio": ("audio/opus",)}


def pin(transceiver: RTCRtpTransceiver) -> None:
    """Offer or accept only the forwarded codec (and its retransmissions) on `transceiver`."""
    wanted = FORWARDED[transceiver.kind]
    capabilities = RTCRtpSender.getCapabilities(transceiver.kind).codecs
    transceiver.setCodecPreferences([c for c in capabilities if c.mimeType.lower() in wanted])


def expect_pinned(pc: RTCPeerConnection, offer: RTCSessionDescription) -> None:
    """Give each m-line of `offer` that `pc` has no transceiver for yet a pinned one.

    aiortc creates the receiving transceivers of an offer only inside setRemoteDescription,
    too late to pin them; it takes ones that exist already, the first free one of the kind.
    They are made in the offer's order, which aiortc's answer follows (a browser offers
    audio before video).
    """
    unclaimed = Counter(t.kind for t in pc.getTransceivers())
    for media in SessionDescription.parse(offer.sdp).media:
        if media.kind not in FORWARDED:
            continue
        if unclaimed[media.kind]:
            unclaimed[media.kind] -= 1
        else:
            pin(pc.addTransceiver(media.kind, direction="recvonly"))


#: Where a publisher's VP8 encoder starts (kbps), told in our answers: a little under the budget
#: the SFU then allows it (`sfu.livekit.media.VIDEO_BITRATE`, 2.5 Mbps for 720p). Without it
#: libwebrtc starts at 300 kbps and, with no transport-wide feedback from aiortc, climbs by
#: loss-based steps: a teacher's camera took about 20 s to reach 720p, a blurred start of
#: every lesson. A poor link still makes the encoder back off from here.
START_BITRATE_KBPS = 2_000


def with_start_bitrate(sdp: str, kbps: int = START_BITRATE_KBPS) -> str:
    """``sdp``, our answer to a publisher, with ``x-google-start-bitrate`` on every VP8 payload
    type: libwebrtc (browsers, LiveKit's native SDK) reads it from the remote description to
    start the encoder there. aiortc and other clients ignore an fmtp parameter they do not know.
    """
    lines = sdp.split("\r\n")
    vp8 = {_payload_type(line) for line in lines if _is_rtpmap(line, "VP8")}
    with_fmtp = {_payload_type(line) for line in lines if line.startswith("a=fmtp:")}
    hint = f"x-google-start-bitrate={kbps}"
    out = []
    for line in lines:
        if line.startswith("a=fmtp:") and _payload_type(line) in vp8:
            line = f"{line};{hint}"
        out.append(line)
        if _is_rtpmap(line, "VP8") and _payload_type(line) not in with_fmtp:
            out.append(f"a=fmtp:{_payload_type(line)} {hint}")
    return "\r\n".join(out)


def _is_rtpmap(line: str, encoding: str) -> bool:
    return line.startswith("a=rtpmap:") and line.split(" ", 1)[-1].upper().startswith(
        f"{encoding}/"
    )


def _payload_type(line: str) -> str:
    """The payload type an `a=rtpmap:` or `a=fmtp:` line is about."""
    return line.split(" ", 1)[0].split(":", 1)[1]
