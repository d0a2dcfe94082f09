"""TURN credentials the SFU hands out: coturn's REST API scheme, as Synapse's turnServer uses."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from sferum_shared.config import ConfigError
from sfu.config import parse_config
from sfu.turn import credentials, ice_servers, rtc_ice_servers
from tests.unit.test_sfu_auth_service import GOOD

URIS = ("turn:turn.school.test:3478?transport=udp", "turn:turn.school.test:3478?transport=tcp")


def test_credentials_are_the_rest_api_scheme() -> None:
    username, password = credentials("s3cret", "@pupil:school.test", 1_000, 3_600)
    assert username == "4600:@pupil:school.test"
    expected = hmac.new(b"s3cret", b"4600:@pupil:school.test", hashlib.sha1).digest()
    assert base64.b64decode(password) == expected


def test_ice_servers_for_browsers_and_for_aiortc() -> None:
    [server] = ice_servers(URIS, "s3cret", "pupil", 1_000, 60)
    assert server["urls"] == list(URIS) and server["username"] == "1060:pupil"
    [mine] = rtc_ice_servers([server])
    assert mine.urls == [URIS[0]]  # UDP only for the SFU's own peers
    assert (mine.username, mine.credential) == (server["username"], server["credential"])
    assert ice_servers(URIS, None, "pupil", 1_000, 60) == []
    assert ice_servers((), "s3cret", "pupil", 1_000, 60) == []


def test_config_reads_turn() -> None:
    config = parse_config({**GOOD, "turn": {"uris": list(URIS), "shared_secret": "s3cret"}})
    assert config.turn_uris == URIS and config.turn_shared_secret == "s3cret"
    assert "s3cret" not in repr(config)
    assert parse_config(GOOD).turn_uris == ()


@pytest.mark.parametrize(
    ("turn", "key"),
    [
        ("turn:x", "turn"),
        ({"uris": ["http://x"], "shared_secret": "s"}, "turn.uris"),
        ({"uris": [], "shared_secret": "s"}, "turn.uris"),
        ({"uris": list(URIS)}, "turn.shared_secret"),
        ({"uris": list(URIS), "shared_secret": "s", "ttl": 5}, "turn.ttl"),
    ],
)
def test_config_errors_name_the_turn_key(turn: Any, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**GOOD, "turn": turn})
    assert caught.value.key == key
