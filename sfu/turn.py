"""TURN credentials for the SFU's clients and its own peers (pure: the clock is passed in).

A pupil behind a strict school or home firewall may reach nothing but the TURN server, so the
SFU hands every client in `joined` the same coturn it uses itself, with short-lived
credentials of the TURN REST API scheme that coturn checks with its shared secret
(`use-auth-secret`) and Synapse's `/voip/turnServer` also uses: the username is
"EXPIRY:NAME", the password base64(HMAC-SHA1(secret, username)). Nothing is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from aiortc import RTCIceServer

#: How long the credentials last: a relay cannot be refreshed with expired ones, and a call
#: (a school day of lessons, an evening broadcast) must not drop halfway.
TTL_SECONDS = 12 * 3600


def credentials(secret: str, name: str, now: int, ttl: int) -> tuple[str, str]:
    """(username, password) valid until `now + ttl`, for coturn's `static-auth-secret`."""
    username = f"{now + ttl}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(
    uris: tuple[str, ...], secret: str | None, name: str, now: int, ttl: int
) -> list[dict[str, Any]]:
    """The `iceServers` a browser's RTCPeerConnection takes; none without a TURN server."""
    if not uris or secret is None:
        return []
    username, password = credentials(secret, name, now, ttl)
    return [{"urls": list(uris), "username": username, "credential": password}]


def rtc_ice_servers(servers: list[dict[str, Any]]) -> list[RTCIceServer]:
    """The same for aiortc (the SFU's own peers), UDP only: aiortc's TURN over TCP adds
    nothing between two servers and every URI is one more allocation to wait for."""
    return [
        RTCIceServer(
            urls=[u for u in server["urls"] if not u.endswith("transport=tcp")],
            username=server["username"],
            credential=server["credential"],
        )
        for server in servers
    ]
