"""Who holds a Matrix OpenID token, asked of our own homeserver; without I/O.

The widget pages (diary mini-app, call page) and the SFU's token service all take an OpenID
token from a client and must learn whose it is. Only our server's users count: the platform is
closed, so a token that another server vouches for is refused like a false one.
"""

from __future__ import annotations

import enum
from urllib.parse import urlencode

from sferum_shared.http import Request, Response
from sferum_shared.ids import UserId, server_of

USERINFO_PATH = "/_matrix/federation/v1/openid/userinfo"


class OpenIdFailure(enum.Enum):
    REJECTED = "rejected"  # the homeserver does not know the token (expired, made up)
    OTHER_SERVER = "other_server"  # a user of another server
    UNAVAILABLE = "unavailable"  # the homeserver gave no usable answer: fail closed


class OpenIdRefused(Exception):
    def __init__(self, failure: OpenIdFailure, detail: str):
        super().__init__(detail)
        self.failure = failure


def userinfo_request(homeserver_url: str, access_token: str) -> Request:
    query = urlencode({"access_token": access_token})
    return Request("GET", f"{homeserver_url.rstrip('/')}{USERINFO_PATH}?{query}")


def user_of(response: Response, server_name: str) -> UserId:
    """The token's user (`sub`) if it is one of `server_name`'s; OpenIdRefused otherwise."""
    if response.status in (401, 403, 404):
        raise OpenIdRefused(OpenIdFailure.REJECTED, f"userinfo: {response.status}")
    sub = response.json_object().get("sub")
    if response.status != 200 or not isinstance(sub, str):
        raise OpenIdRefused(
            OpenIdFailure.UNAVAILABLE, f"userinfo: {response.status} {response.body[:200]!r}"
        )
    if not sub.startswith("@") or server_of(sub) != server_name:
        raise OpenIdRefused(OpenIdFailure.OTHER_SERVER, f"userinfo: {sub} is not of {server_name}")
    return UserId(sub)
