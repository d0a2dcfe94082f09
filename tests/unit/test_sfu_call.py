"""The pure parts of the SFU server: which kinds an offer carries and a grant allows."""

from __future__ import annotations

from sfu.call import allowed_kinds, offered_kinds, publish_refusal
from sfu.grants import CAMERA, MICROPHONE, SCREEN_SHARE, Grant

OFFER = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=x\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


def test_offered_kinds_skip_rejected_m_lines() -> None:
    assert offered_kinds(OFFER) == {"audio", "video"}
    assert offered_kinds("m=audio 0 UDP/TLS/RTP/SAVPF 111\r\n") == frozenset()


def test_allowed_kinds_follow_sources() -> None:
    assert allowed_kinds(Grant.viewer()) == frozenset()
    assert allowed_kinds(Grant.publisher(MICROPHONE)) == {"audio"}
    assert allowed_kinds(Grant.publisher(SCREEN_SHARE)) == {"video"}
    assert allowed_kinds(Grant(can_publish=True)) == {"audio", "video"}  # LiveKit: empty = any


def test_publish_refusal() -> None:
    assert publish_refusal(Grant.publisher(CAMERA, MICROPHONE), OFFER) is None
    assert "video" in (publish_refusal(Grant.publisher(MICROPHONE), OFFER) or "")
    assert "does not allow publishing" in (publish_refusal(Grant.viewer(), OFFER) or "")
