"""Parsing and authentication of SFU signalling messages."""

from __future__ import annotations

import json

import pytest

from sfu.signalling import (
    MAX_MESSAGE_BYTES,
    Answer,
    Hand,
    Join,
    Leave,
    Moderate,
    Mute,
    Publish,
    SignallingError,
    Subscribe,
    authenticate,
    encode_message,
    parse_client_message,
    token_verifier,
)
from sfu.tokens import TokenError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"type": "join", "room": "r", "token": "t"}, Join("r", "t")),
        ({"type": "publish", "sdp": "v=0"}, Publish("v=0")),
        ({"type": "subscribe"}, Subscribe()),
        ({"type": "answer", "sdp": "v=0"}, Answer("v=0")),
        ({"type": "mute", "kind": "audio", "muted": True}, Mute("audio", True)),
        ({"type": "hand", "raised": True}, Hand(True)),
        (
            {"type": "moderate", "participant": "p", "action": "allow_camera"},
            Moderate("p", "allow_camera"),
        ),
        ({"type": "leave"}, Leave()),
    ],
)
def test_parses_valid_messages(raw: dict[str, object], expected: object) -> None:
    assert parse_client_message(json.dumps(raw)) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        json.dumps({"type": "dance"}),
        json.dumps({"type": "join", "room": "r"}),
        json.dumps({"type": "join", "room": "", "token": "t"}),
        json.dumps({"type": "publish", "sdp": 5}),
        json.dumps({"type": "mute", "kind": "screen", "muted": True}),
        json.dumps({"type": "mute", "kind": "audio", "muted": "yes"}),
        json.dumps({"type": "publish", "sdp": "x" * MAX_MESSAGE_BYTES}),
        json.dumps({"type": "hand", "raised": 1}),
        json.dumps({"type": "moderate", "participant": "p", "action": "ban"}),
        json.dumps({"type": "moderate", "action": "mute"}),
    ],
)
def test_rejects_invalid_messages(raw: str) -> None:
    with pytest.raises(SignallingError):
        parse_client_message(raw)


def fake_verifier(token: str, room: str) -> str:
    if token != "good" or room != "lesson":
        raise TokenError("bad token")
    return "pupil"


def test_first_message_must_be_a_verified_join() -> None:
    join = json.dumps({"type": "join", "room": "lesson", "token": "good"})
    assert authenticate(join, fake_verifier) == ("lesson", "pupil")
    with pytest.raises(SignallingError, match="first message"):
        authenticate(json.dumps({"type": "subscribe"}), fake_verifier)
    with pytest.raises(SignallingError, match="refused"):
        authenticate(json.dumps({"type": "join", "room": "other", "token": "good"}), fake_verifier)


def test_token_verifier_refuses_garbage() -> None:
    verifier = token_verifier("secret", lambda: 1_700_000_000)
    with pytest.raises(TokenError):
        verifier("not-a-jwt", "lesson")


def test_encode_message_is_compact_json() -> None:
    encoded = encode_message("participants", participants=["a", "b"])
    assert json.loads(encoded) == {"type": "participants", "participants": ["a", "b"]}
