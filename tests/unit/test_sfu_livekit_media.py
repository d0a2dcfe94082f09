"""The pure parts of the SFU's LiveKit media (sfu.livekit.media): which offered m-line is
which announced track, and how loud a speaker is in LiveKit's terms."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection
from livekit.protocol import models, rtc

from sfu import aiortc_compat
from sfu.livekit import wire
from sfu.livekit.media import announced_tracks, speaker_level


def announced(source: int, kind: int, cid: str) -> models.TrackInfo:
    request = rtc.AddTrackRequest(cid=cid, source=source, type=kind)  # type: ignore[arg-type]
    return wire.track_info(wire.new_sid("TR_"), request)


async def offer(*tracks: tuple[str, str]) -> str:
    """A client's offer with one m-line per (kind, track ID), as browsers name them."""
    pc = RTCPeerConnection()
    try:
        for kind, track_id in tracks:
            sender = pc.addTransceiver(kind, direction="sendonly").sender
            aiortc_compat.set_msid(sender, "stream", track_id)
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


async def test_offered_m_lines_are_matched_to_announced_tracks_by_msid() -> None:
    microphone = announced(models.MICROPHONE, models.AUDIO, "mic-1")
    camera = announced(models.CAMERA, models.VIDEO, "cam-1")
    sdp = await offer(("audio", "mic-1"), ("video", "cam-1"), ("video", "never-announced"))
    found = announced_tracks(sdp, {"mic-1": microphone, "cam-1": camera})
    assert found == {"0": microphone, "1": camera}


async def test_an_m_line_of_another_kind_is_no_match() -> None:
    # Announced as the microphone, offered as video: not published, its packets go nowhere.
    microphone = announced(models.MICROPHONE, models.AUDIO, "mic-1")
    sdp = await offer(("video", "mic-1"))
    assert announced_tracks(sdp, {"mic-1": microphone}) == {}


@pytest.mark.parametrize(
    ("loudness", "level"),
    [(0.0, 0.0), (-3.0, 0.0), (127.0, 1.0), (127.0 - 20, 0.1), (127.0 - 40, 0.01)],
)
def test_speaker_level(loudness: float, level: float) -> None:
    assert speaker_level(loudness) == pytest.approx(level)
