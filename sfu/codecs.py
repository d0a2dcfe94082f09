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
