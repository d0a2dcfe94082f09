"""The OpenID userinfo check, without a server: whose token it is, or why not."""

from __future__ import annotations

import json

import pytest

from sferum_shared.http import Response
from sferum_shared.openid import OpenIdFailure, OpenIdRefused, user_of, userinfo_request

SERVER = "school.test"


def answer(status: int, body: object) -> Response:
    return Response(status, json.dumps(body).encode() if body is not None else b"<html>")


def test_the_request_asks_our_homeserver_with_the_token_escaped() -> None:
    request = userinfo_request("http://127.0.0.1:8008/", "a b&c")
    assert request.method == "GET"
    assert request.url == (
        "http://127.0.0.1:8008/_matrix/federation/v1/openid/userinfo?access_token=a+b%26c"
    )


def test_a_user_of_our_server() -> None:
    assert user_of(answer(200, {"sub": "@anna:school.test"}), SERVER) == "@anna:school.test"


@pytest.mark.parametrize(
    ("response", "failure"),
    [
        (answer(401, {"errcode": "M_UNKNOWN_TOKEN"}), OpenIdFailure.REJECTED),
        (answer(403, {}), OpenIdFailure.REJECTED),
        (answer(404, {}), OpenIdFailure.REJECTED),
        (answer(200, {"sub": "@anna:other.test"}), OpenIdFailure.OTHER_SERVER),
        # A look-alike: the server part must be ours exactly, not end like it.
        (answer(200, {"sub": "@anna:evil-school.test"}), OpenIdFailure.OTHER_SERVER),
        (answer(200, {"sub": "@anna:school.test:8448"}), OpenIdFailure.OTHER_SERVER),
        (answer(200, {"sub": "anna"}), OpenIdFailure.OTHER_SERVER),
        (answer(200, {}), OpenIdFailure.UNAVAILABLE),
        (answer(200, {"sub": 7}), OpenIdFailure.UNAVAILABLE),
        (answer(200, None), OpenIdFailure.UNAVAILABLE),
        (answer(502, None), OpenIdFailure.UNAVAILABLE),
    ],
)
def test_refusals(response: Response, failure: OpenIdFailure) -> None:
    with pytest.raises(OpenIdRefused) as raised:
        user_of(response, SERVER)
    assert raised.value.failure is failure
