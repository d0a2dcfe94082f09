"""The SFU's config: frozen attrs, parsed from a mapping (a YAML file) with errors naming the key.

The auth part needs to know three parties: the homeserver (to check OpenID tokens, at its
`openid` listener), the module's admin API (for `rtc-facts`: room kinds and the directory), and
the SFU itself (the URL handed back to clients and the secret both sides sign tokens with).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from sferum_shared.config import ConfigError, load_yaml_config
from sferum_shared.logs import parse_log_format
from sfu.tokens import MAX_TTL_SECONDS


@attrs.frozen
class SfuConfig:
    server_name: str  # the one homeserver whose users may call (a closed platform)
    homeserver_url: str  # where /_matrix/federation/v1/openid/userinfo is served
    admin_api_url: str  # the module's admin API, …/_synapse/client/sferum/admin/v1
    admin_api_secret: str = attrs.field(repr=False)
    jwt_secret: str = attrs.field(repr=False)  # HS256 key shared by the auth routes and the SFU
    sfu_url: str  # returned to clients as `url`: where they connect with the JWT
    token_ttl_seconds: int = MAX_TTL_SECONDS
    jwt_issuer: str = "sferum"
    http_bind: str = "127.0.0.1"
    http_port: int = 8010
    # How often connected sessions are re-checked against the directory (`sfu.membership`):
    # a user who left or was banned is cut off within this plus one directory round trip,
    # which the issue wants under 5 s.
    membership_check_seconds: float = 2.0
    # Broadcast fan-out (`sfu.edge`): an edge names its origin's WebSocket URL; the process
    # whose `/get_token` clients use lists the edges, among which viewers are spread.
    origin_url: str | None = None
    edge_urls: tuple[str, ...] = ()
    # The deployment's coturn (`sfu.turn`): handed to clients in `joined`, used by the SFU's
    # own peers too. Without it, both sides use their direct addresses only.
    turn_uris: tuple[str, ...] = ()
    turn_shared_secret: str | None = attrs.field(default=None, repr=False)
    log_format: str = "text"  # sferum_shared.logs.LOG_FORMATS


_REQUIRED = (
    "server_name",
    "homeserver_url",
    "admin_api_url",
    "admin_api_secret",
    "jwt_secret",
    "sfu_url",
)
_URLS = ("homeserver_url", "admin_api_url")
_KEYS = frozenset(_REQUIRED) | {
    "token_ttl_seconds",
    "jwt_issuer",
    "http",
    "membership_check_seconds",
    "origin_url",
    "edge_urls",
    "turn",
    "log_format",
}
# Below that the directory is asked too often for every call; above, a removed pupil stays
# too long (the issue: ended within 5 s).
MIN_CHECK_SECONDS, MAX_CHECK_SECONDS = 0.1, 4.0
MIN_SECRET_LENGTH = 32  # HS256 keys shorter than the hash are guessable (RFC 7518 §3.2)


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"must be a non-empty string, got {value!r}")
    return value.strip()


def _whole(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(key, f"must be a whole number from {low} to {high}, got {value!r}")
    return value


def _turn(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("turn", "must be a mapping with uris and shared_secret")
    for key in raw:
        if key not in ("uris", "shared_secret"):
            raise ConfigError(f"turn.{key}", "unknown key; allowed: shared_secret, uris")
    uris = raw.get("uris")
    if (
        not isinstance(uris, list)
        or not uris
        or not all(isinstance(u, str) and u.startswith(("turn:", "turns:")) for u in uris)
    ):
        raise ConfigError("turn.uris", f"must be a list of turn: or turns: URIs, got {uris!r}")
    secret = raw.get("shared_secret")
    if not isinstance(secret, str) or not secret:
        raise ConfigError("turn.shared_secret", "must be coturn's static-auth-secret")
    return {"turn_uris": tuple(uris), "turn_shared_secret": secret}


def parse_config(raw: Any) -> SfuConfig:
    """The config from a mapping; ConfigError names the first wrong key."""
    if not isinstance(raw, Mapping):
        raise ConfigError("(top)", f"must be a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in _KEYS:
            raise ConfigError(str(key), f"unknown key; allowed: {', '.join(sorted(_KEYS))}")
    values: dict[str, Any] = {key: _text(raw, key) for key in _REQUIRED}
    for key in _URLS:
        if not values[key].startswith(("http://", "https://")):
            raise ConfigError(key, f"must be an http(s) URL, got {values[key]!r}")
        values[key] = values[key].rstrip("/")
    if not values["sfu_url"].startswith(("http://", "https://", "ws://", "wss://")):
        raise ConfigError(
            "sfu_url", f"must be an http(s) or ws(s) URL, got {values['sfu_url']!r}"
        )
    if len(values["jwt_secret"]) < MIN_SECRET_LENGTH:
        raise ConfigError("jwt_secret", f"must be at least {MIN_SECRET_LENGTH} characters long")
    values["token_ttl_seconds"] = _whole(
        raw.get("token_ttl_seconds", MAX_TTL_SECONDS), "token_ttl_seconds", 60, MAX_TTL_SECONDS
    )
    issuer = raw.get("jwt_issuer", "sferum")
    if not isinstance(issuer, str) or not issuer:
        raise ConfigError("jwt_issuer", f"must be a non-empty string, got {issuer!r}")
    values["jwt_issuer"] = issuer
    interval = raw.get("membership_check_seconds", 2.0)
    if (
        isinstance(interval, bool)
        or not isinstance(interval, int | float)
        or not MIN_CHECK_SECONDS <= interval <= MAX_CHECK_SECONDS
    ):
        raise ConfigError(
            "membership_check_seconds",
            f"must be a number of seconds from {MIN_CHECK_SECONDS} to {MAX_CHECK_SECONDS}, "
            f"got {interval!r}",
        )
    values["membership_check_seconds"] = float(interval)
    origin = raw.get("origin_url")
    if origin is not None and (
        not isinstance(origin, str) or not origin.startswith(("ws://", "wss://"))
    ):
        raise ConfigError(
            "origin_url", f"must be the origin's ws(s)://…/ws URL, got {origin!r}"
        )
    values["origin_url"] = origin
    edges = raw.get("edge_urls", [])
    if not isinstance(edges, list) or not all(
        isinstance(url, str) and url.startswith(("http://", "https://", "ws://", "wss://"))
        for url in edges
    ):
        raise ConfigError(
            "edge_urls", f"must be a list of the edges' http(s) or ws(s) URLs, got {edges!r}"
        )
    values["edge_urls"] = tuple(edges)
    values.update(_turn(raw.get("turn")))
    http = raw.get("http") or {}
    if not isinstance(http, Mapping):
        raise ConfigError("http", "must be a mapping with bind and port")
    for key in http:
        if key not in ("bind", "port"):
            raise ConfigError(f"http.{key}", "unknown key; allowed: bind, port")
    values["http_port"] = _whole(http.get("port", 8010), "http.port", 1, 65535)
    bind = http.get("bind", "127.0.0.1")
    if not isinstance(bind, str) or not bind:
        raise ConfigError("http.bind", f"must be an address, got {bind!r}")
    values["http_bind"] = bind
    values["log_format"] = parse_log_format(raw)
    return SfuConfig(**values)


def load_config(path: Path) -> SfuConfig:
    """The config in a YAML file; ConfigError for a missing, unreadable or wrong file."""
    return load_yaml_config(path, parse_config)
