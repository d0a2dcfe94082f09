"""Which files an event names (`policy.media`), and who may fetch one."""

from __future__ import annotations

from typing import Any

import pytest

from synapse_sferum.policy.media import local_media_in, may_fetch_media

S = "school.test"


@pytest.mark.parametrize(
    ("content", "found"),
    [
        ({"msgtype": "m.image", "url": f"mxc://{S}/abc"}, {"abc"}),
        ({"msgtype": "m.image", "url": f"mxc://{S}/abc",
          "info": {"thumbnail_url": f"mxc://{S}/thumb"}}, {"abc", "thumb"}),
        ({"msgtype": "m.file", "file": {"url": f"mxc://{S}/enc", "key": {}}}, {"enc"}),  # E2EE
        ({"membership": "join", "avatar_url": f"mxc://{S}/me"}, {"me"}),
        ({"format": "org.matrix.custom.html",
          "formatted_body": f'<img src="mxc://{S}/a1"><img src="mxc://{S}/a2">'}, {"a1", "a2"}),
        ({"images": {"cat": {"url": f"mxc://{S}/sticker"}}}, {"sticker"}),  # an image pack
        ({"url": "mxc://partner.example/theirs"}, set()),  # another server's: theirs to guard
        ({"url": "https://example.org/x.png", "body": "mxc:// is how files are named"}, set()),
        ({"list": [f"mxc://{S}/in-a-list", 5, None]}, {"in-a-list"}),
    ],
    ids=["image", "thumbnail", "encrypted", "avatar", "inline-html", "image-pack", "remote",
         "no-mxc", "list"],
)  # fmt: skip
def test_the_files_an_event_names(content: dict[str, Any], found: set[str]) -> None:
    assert local_media_in(content, S) == found


F = {"local": True, "uploader": False, "shares_a_room": False, "avatar_of_contact": False,
     "operator": False}


@pytest.mark.parametrize(
    ("facts", "allowed"),
    [
        ({**F, "uploader": True}, True),
        ({**F, "shares_a_room": True}, True),
        ({**F, "avatar_of_contact": True}, True),  # seen in the directory, before any room
        (F, False),
        ({**F, "operator": True}, True),
        ({**F, "local": False}, True),
    ],
    ids=["uploader", "room-member", "contact-avatar", "anyone-else", "operator", "remote"],
)  # fmt: skip
def test_who_may_fetch_a_file(facts: dict[str, bool], allowed: bool) -> None:
    assert may_fetch_media(**facts) is allowed
