"""What a teacher may do to others in a call, and what a pupil may then publish (pure).

A lesson's teacher (a grant with LiveKit's `roomAdmin`, `sfu.grants`) can:

* ``mute`` / ``unmute`` a participant's microphone. The SFU stops forwarding it (not the
  pupil's own client), and the pupil's own unmute does not lift it; only ``unmute`` does.
* ``remove`` a participant: the session ends with `Refusal.REMOVED`, and the same Matrix user
  cannot join this call again while it lasts (a token is valid for up to an hour).
* ``allow_camera`` / ``deny_camera``: pupils publish their camera only when the teacher allows
  it; denying it again stops forwarding their video.
"""

from __future__ import annotations

from sfu.grants import CAMERA, Grant

ACTIONS = ("mute", "unmute", "remove", "allow_camera", "deny_camera")


def moderation_refusal(actor: Grant, actor_identity: str, target: str | None) -> str | None:
    """Why ``actor`` may not moderate ``target`` (None: no such participant), or None."""
    if not actor.room_admin:
        return "moderate refused: only the call's teacher may moderate others"
    if target is None:
        return "moderate refused: no such participant in this call"
    if target == actor_identity:
        return "moderate refused: use mute or leave for yourself"
    return None


def publishable(grant: Grant, camera_allowed: bool) -> Grant:
    """The grant in force: the token's, plus the camera once the teacher allowed it."""
    if not camera_allowed or not grant.can_publish or CAMERA in grant.can_publish_sources:
        return grant
    return Grant.publisher(CAMERA, *grant.can_publish_sources, room_admin=grant.room_admin)
