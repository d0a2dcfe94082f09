"""The SFU's WebSocket signalling messages (pure: parsing and encoding only).

One JSON object per WebSocket text message, with a ``type``. The first client message must
be ``join`` carrying the JWT from the auth service; it is verified before anything else is
parsed, so an unauthenticated socket can do nothing but be closed. Parsing is strict (unknown
types, missing or mistyped fields are errors) because every message here drives media state.

Client → server: ``join {room, token}``, ``publish {sdp}`` (offer; again to add a track, e.g.
the camera a teacher allowed), ``subscribe {}``, ``answer {sdp}`` (to the SFU's offer),
``mute {kind, muted}``, ``hand {raised}``, ``moderate {participant, action}`` (a room admin:
:data:`sfu.moderation.ACTIONS`), ``leave {}``.
Server → client: ``joined {participant, ice_servers}`` (TURN for the client's connections),
``answer {sdp}``, ``offer {sdp}`` (first for a subscription, then again whenever new tracks
need new m-lines: renegotiation),
``participants {participants}``, ``speakers {speakers}`` (the active speakers' identities),
``moderated {action, by}`` (to the one moderated), ``removed {reason, message}``,
``error {message}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs

from sfu.moderation import ACTIONS
from sfu.tokens import TokenError, verify

MAX_MESSAGE_BYTES = 64 * 1024  # an SDP with a few m-lines is ~5 KiB


class SignallingError(ValueError):
    """A client message that is not valid JSON or not a valid message."""


@attrs.frozen
class Join:
    room: str
    token: str


@attrs.frozen
class Publish:
    sdp: str


@attrs.frozen
class Subscribe:
    pass


@attrs.frozen
class Answer:
    sdp: str


@attrs.frozen
class Mute:
    kind: str
    muted: bool


@attrs.frozen
class Hand:
    raised: bool


@attrs.frozen
class Moderate:
    participant: str
    action: str


@attrs.frozen
class Leave:
    pass


ClientMessage = Join | Publish | Subscribe | Answer | Mute | Hand | Moderate | Leave

#: Maps (token, room) to the participant identity, or raises TokenError.
Verifier = Callable[[str, str], str]


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or (kind is str and not value):
        raise SignallingError(f"{data.get('type')}: {name!r} must be a non-empty {kind.__name__}")
    return value


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Parse one client message; SignallingError if it is not exactly a known message."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise SignallingError("message too large")
    try:
        data = json.loads(raw)
    except ValueError:
        raise SignallingError("not JSON") from None
    if not isinstance(data, dict):
        raise SignallingError("a message must be a JSON object")
    kind = data.get("type")
    if kind == "join":
        return Join(room=_field(data, "room", str), token=_field(data, "token", str))
    if kind == "publish":
        return Publish(sdp=_field(data, "sdp", str))
    if kind == "subscribe":
        return Subscribe()
    if kind == "answer":
        return Answer(sdp=_field(data, "sdp", str))
    if kind == "mute":
        media = _field(data, "kind", str)
        if media not in ("audio", "video"):
            raise SignallingError("mute: 'kind' must be 'audio' or 'video'")
        return Mute(kind=media, muted=_field(data, "muted", bool))
    if kind == "hand":
        return Hand(raised=_field(data, "raised", bool))
    if kind == "moderate":
        action = _field(data, "action", str)
        if action not in ACTIONS:
            raise SignallingError(f"moderate: 'action' must be one of {', '.join(ACTIONS)}")
        return Moderate(participant=_field(data, "participant", str), action=action)
    if kind == "leave":
        return Leave()
    raise SignallingError(f"unknown message type {kind!r}")


def authenticate(raw: str | bytes, verifier: Verifier) -> tuple[str, str]:
    """The (room, participant) of a socket's first message, which must be a valid join."""
    message = parse_client_message(raw)
    if not isinstance(message, Join):
        raise SignallingError("the first message must be 'join'")
    try:
        return message.room, verifier(message.token, message.room)
    except TokenError as e:
        raise SignallingError(f"join refused: {e}") from None


def token_verifier(secret: str, now: Callable[[], int]) -> Verifier:
    """A :data:`Verifier` backed by :func:`sfu.tokens.verify` (identity = ``sub`` claim)."""

    def check(token: str, room: str) -> str:
        return str(verify(token, secret, room, now())["sub"])

    return check


def encode_message(kind: str, **fields: object) -> str:
    """Encode one message (server → client, or an edge's to its origin)."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))
