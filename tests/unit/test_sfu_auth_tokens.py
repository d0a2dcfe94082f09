"""SFU tokens (sfu.tokens): lk-jwt-service's hashed names, and HS256 JWTs refused when due."""

from __future__ import annotations

import base64
import hashlib

import jwt
import pytest

from sfu import tokens
from sfu.grants import CAMERA, MICROPHONE, SCREEN_SHARE, Grant
from sfu.tokens import TokenError

SECRET = "s" * 40
NOW = 1_760_000_000
TEACHER = Grant.publisher(CAMERA, MICROPHONE, SCREEN_SHARE, room_admin=True)


def go_hash(json_text: str) -> str:
    digest = hashlib.sha256(json_text.encode()).digest()
    return base64.b64encode(digest).decode().rstrip("=")


def test_room_name_is_lk_jwt_service_alias() -> None:
    # LiveKitRoomAliasFor: unpadded std base64 of sha256(json.Marshal([room, slot]))
    assert tokens.room_name("!abc:school.test", "m.call#ROOM") == go_hash(
        '["!abc:school.test","m.call#ROOM"]'
    )
    assert tokens.room_name("!abc:school.test") == tokens.room_name(
        "!abc:school.test", "m.call#ROOM"
    )
    name = tokens.room_name("!abc:school.test")
    assert len(name) == 43 and "=" not in name


def test_identity_is_lk_jwt_service_identity() -> None:
    assert tokens.identity("@u:hs", "DEV", "m1") == go_hash('["@u:hs","DEV","m1"]')
    assert tokens.legacy_identity("@u:hs", "DEV") == "@u:hs:DEV"


def test_names_escape_like_go() -> None:
    # Go's json.Marshal escapes <, > and & and keeps other text as UTF-8.
    assert tokens.room_name("!a<b>&:hs", "слот") == go_hash(
        '["!a\\u003cb\\u003e\\u0026:hs","слот"]'
    )


def test_different_slots_and_members_give_different_names() -> None:
    assert tokens.room_name("!r:hs", "m.call#ROOM") != tokens.room_name("!r:hs", "m.call#2")
    assert tokens.identity("@u:hs", "D", "1") != tokens.identity("@u:hs", "D", "2")


def test_issued_claims_are_livekit_shaped() -> None:
    room = tokens.room_name("!r:hs")
    token = tokens.issue(TEACHER, room, "ident", SECRET, NOW, 600)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    claims = tokens.verify(token, SECRET, room, NOW + 1)
    assert claims["sub"] == "ident" and claims["iss"] == "sferum"
    assert (claims["nbf"], claims["exp"]) == (NOW, NOW + 600)
    assert claims["video"] == {
        "room": room,
        "roomJoin": True,
        "roomCreate": False,
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": True,
        "canPublishSources": ["camera", "microphone", "screen_share"],
        "hidden": False,
        "roomAdmin": True,
    }
    assert tokens.grant_of(claims) == TEACHER


def test_viewer_token_publishes_nothing() -> None:
    token = tokens.issue(Grant.viewer(), "room", "id", SECRET, NOW)
    grant = tokens.grant_of(tokens.verify(token, SECRET, "room", NOW))
    assert grant == Grant.viewer() and not grant.can_publish


@pytest.mark.parametrize("ttl", [0, -1, 3601, 86_400])
def test_ttl_is_at_most_an_hour(ttl: int) -> None:
    with pytest.raises(ValueError):
        tokens.issue(TEACHER, "room", "id", SECRET, NOW, ttl)


def test_expired_token_is_refused() -> None:
    token = tokens.issue(TEACHER, "room", "id", SECRET, NOW, 60)
    tokens.verify(token, SECRET, "room", NOW + 59)
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(token, SECRET, "room", NOW + 60)


def test_token_not_yet_valid_is_refused() -> None:
    token = tokens.issue(TEACHER, "room", "id", SECRET, NOW, 60)
    with pytest.raises(TokenError, match="not valid yet"):
        tokens.verify(token, SECRET, "room", NOW - 1)


def test_forged_tokens_are_refused() -> None:
    token = tokens.issue(Grant.viewer(), "room", "id", SECRET, NOW)
    with pytest.raises(TokenError):
        tokens.verify(token, "another secret of sufficient length!!", "room", NOW)
    # a viewer's token edited to publish: the signature no longer matches
    header, _payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["video"]["canPublish"] = True
    forged_payload = jwt.encode(claims, "x" * 40, algorithm="HS256").split(".")[1]
    with pytest.raises(TokenError):
        tokens.verify(f"{header}.{forged_payload}.{signature}", SECRET, "room", NOW)
    # alg "none" and garbage
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(TokenError):
        tokens.verify(unsigned, SECRET, "room", NOW)
    with pytest.raises(TokenError):
        tokens.verify("not.a.jwt", SECRET, "room", NOW)


def test_token_for_another_room_is_refused() -> None:
    token = tokens.issue(TEACHER, tokens.room_name("!a:hs"), "id", SECRET, NOW)
    with pytest.raises(TokenError, match="another room"):
        tokens.verify(token, SECRET, tokens.room_name("!b:hs"), NOW)


def test_token_living_longer_than_an_hour_is_refused() -> None:
    claims = {"sub": "id", "nbf": NOW, "exp": NOW + 7200, "video": {"room": "r", "roomJoin": True}}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match="longer than an hour"):
        tokens.verify(token, SECRET, "r", NOW)


def test_token_without_required_claims_is_refused() -> None:
    token = jwt.encode({"sub": "id", "video": {"room": "r"}}, SECRET, algorithm="HS256")
    with pytest.raises(TokenError):
        tokens.verify(token, SECRET, "r", NOW)


def test_token_may_name_its_own_room() -> None:
    # LiveKit's /rtc: the client sends only its token, which says which room it joins.
    room = tokens.room_name("!a:hs")
    token = tokens.issue(TEACHER, room, "id", SECRET, NOW)
    assert tokens.verify(token, SECRET, None, NOW)["video"]["room"] == room


@pytest.mark.parametrize("room", [None, 7, ["r"]])
def test_token_naming_no_room_is_refused_when_it_must_name_one(room: object) -> None:
    claims = {"sub": "id", "nbf": NOW, "exp": NOW + 60, "video": {"room": room, "roomJoin": True}}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match="another room"):
        tokens.verify(token, SECRET, None, NOW)
