"""Real photos (issue 15): a profile photo is a file its owner uploaded to this server.

Synapse lets anyone who knows an `mxc://` URI name it as their avatar, so one member could wear
another's photo (a teacher's, a classmate's), and the file would then reach every room the
impostor is in. Room avatars are held to the same rule. A per-room avatar follows the global one,
as the display name follows the roster, so what a room shows is what the profile says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sferum_shared.vocabulary import Reason
from synapse_sferum.policy.decision import ALLOW, Decision, refuse
from synapse_sferum.policy.media import local_media_id


def may_use_avatar(url: Any, *, server_name: str, own_upload: bool) -> Decision:
    """Whether a user may show `url` as their (or a room's) photo; "" takes the photo away.

    `own_upload`: the user uploaded the file `url` names on this server. `url` is as the
    client sent it: anything but a string names no photo of ours.
    """
    if url == "":
        return ALLOW
    if not isinstance(url, str) or local_media_id(url, server_name) is None:
        return refuse(Reason.AVATAR_NOT_LOCAL)
    return ALLOW if own_upload else refuse(Reason.AVATAR_NOT_OWN)


def real_profile(
    content: Mapping[str, Any], *, displayname: str | None, avatar_url: str | None
) -> dict[str, Any] | None:
    """A joined member event's content with the real name and the global photo; None when it
    already shows them. `displayname` None leaves the name as sent (accounts outside the
    roster); `avatar_url` None means no photo."""
    wanted = dict(content)
    if displayname is not None:
        wanted["displayname"] = displayname
    if avatar_url is None:
        wanted.pop("avatar_url", None)
    else:
        wanted["avatar_url"] = avatar_url
    return None if wanted == dict(content) else wanted
