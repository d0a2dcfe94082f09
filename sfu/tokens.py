"""SFU access tokens: hashed room and identity names, and LiveKit-shaped HS256 JWTs. Pure.

Names follow lk-jwt-service (`helper.go`: `LiveKitRoomAliasFor`, `LiveKitIdentityFor`), the
deployed form of MSC4195: unpadded standard base64 of SHA-256 over the JSON array of the parts,
as Go's `json.Marshal` writes it. Hashing keeps Matrix room and user IDs out of the SFU's room
and participant names, and gives every (room, slot) pair its own SFU room.

The claims are LiveKit's (`sub`, `iss`, `nbf`, `exp`, `video: {...}`) so that the grant reads the
same as in the MatrixRTC documents; `roomCreate` is never granted (MSC4195: it also allows
deleting rooms) and tokens live at most an hour.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import jwt

from sfu.grants import Grant

MAX_TTL_SECONDS = 3600
LEGACY_SLOT_ID = "m.call#ROOM"  # lk-jwt-service's slot for /sfu/get requests
ALGORITHM = "HS256"
_LEEWAY_SECONDS = 0


class TokenError(Exception):
    """A token that must not be accepted: expired, forged, malformed, or for another room."""


def _go_json(parts: list[str]) -> bytes:
    """`json.Marshal([]string{...})` of Go: compact, UTF-8, with <, >, & and U+2028/9 escaped."""
    text = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text.encode()


def _hash_name(*parts: str) -> str:
    digest = hashlib.sha256(_go_json(list(parts))).digest()
    return base64.b64encode(digest).decode().rstrip("=")


def room_name(room_id: str, slot_id: str = LEGACY_SLOT_ID) -> str:
    """The SFU room of a Matrix room's RTC slot."""
    return _hash_name(room_id, slot_id)


def identity(user_id: str, device_id: str, member_id: str) -> str:
    """The SFU participant name of one membership (`/get_token`)."""
    return _hash_name(user_id, device_id, member_id)


def legacy_identity(user_id: str, device_id: str) -> str:
    """The participant name lk-jwt-service gives `/sfu/get` callers: `@u:hs:DEVICE`."""
    return f"{user_id}:{device_id}"


def issue(
    grant: Grant,
    room: str,
    identity: str,
    secret: str,
    now: int,
    ttl: int = MAX_TTL_SECONDS,
    issuer: str = "sferum",
    private_claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed token for one participant of one SFU room, valid from `now` for `ttl` seconds.

    `private_claims` are added beside LiveKit's (never over them): our own SFU reads them, e.g.
    `sfu.membership`'s Matrix room and user, which the hashed names deliberately hide.
    """
    if not 0 < ttl <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be 1..{MAX_TTL_SECONDS} seconds, got {ttl}")
    if not secret:
        raise ValueError("the signing secret must not be empty")
    claims = {
        "iss": issuer,
        "sub": identity,
        "nbf": now,
        "exp": now + ttl,
        "video": {
            "room": room,
            "roomJoin": True,
            "roomCreate": False,
            "canPublish": grant.can_publish,
            "canSubscribe": grant.can_subscribe,
            "canPublishData": grant.can_publish,
            "canPublishSources": list(grant.can_publish_sources),
            "hidden": grant.hidden,
            "roomAdmin": grant.room_admin,
        },
    }
    return jwt.encode({**(private_claims or {}), **claims}, secret, algorithm=ALGORITHM)


def verify(token: str, secret: str, room: str | None, now: int) -> dict[str, Any]:
    """The claims of a token that may join `room` at `now`; TokenError otherwise.

    Only HS256 is accepted (never `none`, never an algorithm the token names for itself), the
    time window is checked against `now` rather than the clock, and a token minted for any
    other room is refused even when its signature is good. With `room` None the token names
    its room itself (LiveKit's protocol: the client says only "here is my token"), read from
    `claims["video"]["room"]` once the signature holds.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={
                "require": ["exp", "nbf", "sub", "video"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidTokenError as e:
        raise TokenError(f"invalid token: {e}") from None
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int) or not isinstance(nbf, int):
        raise TokenError("exp and nbf must be whole seconds")
    if now >= exp + _LEEWAY_SECONDS:
        raise TokenError("the token has expired")
    if now < nbf - _LEEWAY_SECONDS:
        raise TokenError("the token is not valid yet")
    if exp - nbf > MAX_TTL_SECONDS:
        raise TokenError("the token lives longer than an hour")
    video = claims.get("video")
    if not isinstance(video, dict) or video.get("roomJoin") is not True:
        raise TokenError("the token grants no room join")
    if not isinstance(video.get("room"), str) or (room is not None and video["room"] != room):
        raise TokenError("the token is for another room")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise TokenError("the token names no participant")
    return claims


def grant_of(claims: dict[str, Any]) -> Grant:
    """The grant a verified token carries (what the SFU enforces on publish)."""
    video = claims.get("video") or {}
    sources = video.get("canPublishSources") or []
    return Grant(
        can_publish=video.get("canPublish") is True,
        can_subscribe=video.get("canSubscribe") is True,
        can_publish_sources=tuple(s for s in sources if isinstance(s, str)),
        hidden=video.get("hidden") is True,
        room_admin=video.get("roomAdmin") is True,
    )
