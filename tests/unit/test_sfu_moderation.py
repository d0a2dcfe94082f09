"""Who may moderate whom in a call, and what a pupil may publish once the camera is allowed."""

from __future__ import annotations

import pytest

from sfu.call import allowed_kinds
from sfu.grants import CAMERA, MICROPHONE, SCREEN_SHARE, Grant
from sfu.moderation import moderation_refusal, publishable

TEACHER = Grant.publisher(CAMERA, MICROPHONE, SCREEN_SHARE, room_admin=True)
PUPIL = Grant.publisher(MICROPHONE)


@pytest.mark.parametrize(
    ("actor", "actor_identity", "target", "refused"),
    [
        (TEACHER, "teacher", "pupil", None),
        (PUPIL, "pupil", "teacher", "only the call's teacher"),
        (Grant.viewer(), "viewer", "pupil", "only the call's teacher"),
        (TEACHER, "teacher", None, "no such participant"),
        (TEACHER, "teacher", "teacher", "for yourself"),
    ],
)
def test_moderation_refusal(
    actor: Grant, actor_identity: str, target: str | None, refused: str | None
) -> None:
    refusal = moderation_refusal(actor, actor_identity, target)
    if refused is None:
        assert refusal is None
    else:
        assert refusal is not None and refused in refusal


@pytest.mark.parametrize(
    ("grant", "camera_allowed", "kinds"),
    [
        (PUPIL, False, {"audio"}),
        (PUPIL, True, {"audio", "video"}),
        (Grant.viewer(), True, set()),  # allowing a camera never makes a viewer publish
        (TEACHER, False, {"audio", "video"}),
    ],
)
def test_publishable(grant: Grant, camera_allowed: bool, kinds: set[str]) -> None:
    assert allowed_kinds(publishable(grant, camera_allowed)) == kinds


def test_an_allowed_camera_keeps_the_rest_of_the_grant() -> None:
    allowed = publishable(PUPIL, True)
    assert allowed.can_publish_sources == (CAMERA, MICROPHONE)
    assert not allowed.room_admin and allowed.can_subscribe
