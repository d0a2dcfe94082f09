"""The pure parts of a call: which kinds an offer carries and a grant allows, who is listed how."""

from __future__ import annotations

from sfu.call import Participant, allowed_kinds, offered_kinds, publish_refusal
from sfu.grants import CAMERA, MICROPHONE, SCREEN_SHARE, Grant
from sfu.membership import Session

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


def test_only_publishers_are_named_in_the_participants_list() -> None:
    """A broadcast's viewers are the school's families: they stay anonymous hashes."""
    session = Session("!room:school.test", "@pupil:school.test", "DEV")
    pupil = Participant("id-pupil", Grant.publisher(MICROPHONE), None, session)  # type: ignore[arg-type]
    viewer = Participant("id-viewer", Grant.viewer(), None, session)  # type: ignore[arg-type]
    pupil.muted_by_teacher.add("audio")
    pupil.hand_raised = True
    assert pupil.describe(publishing=True) == {
        "identity": "id-pupil",
        "publishing": True,
        "muted": ["audio"],
        "hand_raised": True,
        "camera_allowed": False,
        "user": "@pupil:school.test",
    }
    assert "user" not in viewer.describe(publishing=False)
