"""Whose photo a user may show (`policy.photos`), and what a member event shows."""

from __future__ import annotations

from typing import Any

import pytest

from sferum_shared.vocabulary import Reason
from synapse_sferum.policy.photos import may_use_avatar, real_profile

S = "school.test"


@pytest.mark.parametrize(
    ("url", "own_upload", "reason"),
    [
        (f"mxc://{S}/mine", True, None),
        ("", False, None),  # taking the photo away
        (f"mxc://{S}/teachers", False, Reason.AVATAR_NOT_OWN),
        ("mxc://partner.example/theirs", False, Reason.AVATAR_NOT_LOCAL),
        ("mxc://partner.example/theirs", True, Reason.AVATAR_NOT_LOCAL),
        ("https://example.org/face.png", False, Reason.AVATAR_NOT_LOCAL),
        (f"mxc://{S}/mine#x", True, Reason.AVATAR_NOT_LOCAL),  # not exactly an mxc URI
        ({"url": f"mxc://{S}/mine"}, True, Reason.AVATAR_NOT_LOCAL),  # not a string
        (None, False, Reason.AVATAR_NOT_LOCAL),
    ],
    ids=["own", "unset", "someone-elses", "remote", "remote-claimed", "https", "suffix",
         "object", "null"],
)  # fmt: skip
def test_whose_photo_a_user_may_show(url: Any, own_upload: bool, reason: Reason | None) -> None:
    decision = may_use_avatar(url, server_name=S, own_upload=own_upload)
    assert decision.allowed is (reason is None)
    assert decision.reason == (reason.value if reason else "")


MINE, OTHER = f"mxc://{S}/mine", f"mxc://{S}/other"


@pytest.mark.parametrize(
    ("content", "displayname", "avatar_url", "expected"),
    [
        ({"membership": "join", "displayname": "Анна", "avatar_url": MINE}, "Анна", MINE, None),
        ({"membership": "join", "displayname": "Анна", "avatar_url": OTHER}, "Анна", MINE,
         {"membership": "join", "displayname": "Анна", "avatar_url": MINE}),
        ({"membership": "join", "displayname": "Анна", "avatar_url": OTHER}, "Анна", None,
         {"membership": "join", "displayname": "Анна"}),
        ({"membership": "join", "displayname": "Аня"}, "Анна", MINE,
         {"membership": "join", "displayname": "Анна", "avatar_url": MINE}),
        ({"membership": "join", "displayname": "Гость", "avatar_url": OTHER}, None, MINE,
         {"membership": "join", "displayname": "Гость", "avatar_url": MINE}),
        ({"membership": "join"}, None, None, None),
    ],
    ids=["as-profile", "per-room-avatar", "no-global-photo", "nickname", "outside-roster",
         "bare"],
)  # fmt: skip
def test_a_member_event_shows_the_real_name_and_the_global_photo(
    content: dict[str, Any],
    displayname: str | None,
    avatar_url: str | None,
    expected: dict[str, Any] | None,
) -> None:
    assert real_profile(content, displayname=displayname, avatar_url=avatar_url) == expected
