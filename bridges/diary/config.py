"""The bridge's config file (`bridge.yaml`, written by `sferumctl init --diary-source`).

Parsed into frozen attrs classes; every error names the key and what is allowed.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import attrs

from sferum_shared.config import DIARY_SOURCE_KINDS, ConfigError, load_yaml_config
from sferum_shared.logs import parse_log_format

# A REST source's per-request timeout, in seconds.
DEFAULT_TIMEOUT, MIN_TIMEOUT, MAX_TIMEOUT = 10.0, 1.0, 300.0


@attrs.frozen
class SourceConfig:
    kind: str
    location: str = ""  # a path (csv, ical) or a base URL (rest); empty for push
    client_id: str = ""  # oneroster-rest: OAuth 2 client credentials
    client_secret: str = ""
    # oneroster-rest: how long each request may take before the sync counts the source as
    # unreadable (a district's server under load may need longer than the default)
    timeout_seconds: float = DEFAULT_TIMEOUT

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.location}" if self.location else self.kind


@attrs.frozen
class BridgeConfig:
    homeserver_url: str
    server_name: str
    bot_user_id: str
    as_token: str
    admin_api_url: str  # the module's admin API (roster sync)
    admin_api_secret: str
    database: str  # a SQLite path or postgresql://…
    sources: tuple[SourceConfig, ...]
    http_bind: str = "127.0.0.1"
    http_port: int = 8009
    control_secret: str = ""  # bearer token of POST /sync (sferumctl diary sync)
    push_secret: str = ""  # HMAC key of the push source
    ical_secret: str = ""  # signs the per-class iCalendar feed URLs
    # Where browsers reach the bridge (the mini-app, the feeds); empty: no widgets in rooms.
    public_url: str = ""
    timezone: str = "Europe/Moscow"
    sync_interval_seconds: int = 30
    digest_time: time = time(7, 30)
    templates_dir: Path | None = None
    log_format: str = "text"  # sferum_shared.logs.LOG_FORMATS


_KEYS = {f.name for f in attrs.fields(BridgeConfig)} - {"http_bind", "http_port"} | {"http"}
_REQUIRED = (
    "homeserver_url",
    "server_name",
    "bot_user_id",
    "as_token",
    "admin_api_url",
    "admin_api_secret",
    "database",
)


def _text(raw: Mapping[str, Any], key: str, where: str = "") -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}{key}", f"must be a non-empty string, got {value!r}")
    return value


def _source(raw: Any, index: int) -> SourceConfig:
    where = f"sources[{index}]"
    if isinstance(raw, str):
        kind, _, location = raw.partition(":")
        raw = {"kind": kind, "location": location}
    if not isinstance(raw, Mapping):
        raise ConfigError(where, f"must be KIND:LOCATION or a mapping, got {raw!r}")
    allowed = {"kind", "location", "client_id", "client_secret", "timeout_seconds"}
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}", f"unknown key; allowed: {sorted(allowed)}")
    kind = str(raw.get("kind"))
    if kind not in DIARY_SOURCE_KINDS:
        raise ConfigError(f"{where}.kind", f"must be one of {DIARY_SOURCE_KINDS}, got {kind!r}")
    location = str(raw.get("location") or "")
    if kind != "push" and not location:
        raise ConfigError(f"{where}.location", f"{kind} needs a location")
    client_id, client_secret = str(raw.get("client_id") or ""), str(raw.get("client_secret") or "")
    if kind == "oneroster-rest":
        if not location.startswith(("http://", "https://")):
            raise ConfigError(
                f"{where}.location", f"must be an http(s) URL, got {location!r}"
            )
        url = urlsplit(location)
        if url.username:  # https://client:secret@host/...: the OAuth 2 client credentials
            client_id, client_secret = unquote(url.username), unquote(url.password or "")
            netloc = url.hostname + (f":{url.port}" if url.port else "") if url.hostname else ""
            location = urlunsplit(url._replace(netloc=netloc))
    timeout = raw.get("timeout_seconds", DEFAULT_TIMEOUT)
    if kind != "oneroster-rest" and "timeout_seconds" in raw:
        raise ConfigError(f"{where}.timeout_seconds", f"is for oneroster-rest only, not {kind}")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT
    ):
        raise ConfigError(
            f"{where}.timeout_seconds",
            f"must be seconds from {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g}, got {timeout!r}",
        )
    return SourceConfig(kind, location, client_id, client_secret, float(timeout))


def parse_config(raw: Any) -> BridgeConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("(top)", f"must be a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in _KEYS:
            raise ConfigError(str(key), f"unknown key; allowed: {', '.join(sorted(_KEYS))}")
    values: dict[str, Any] = {key: _text(raw, key) for key in _REQUIRED}
    sources = raw.get("sources")
    if not isinstance(sources, list) or not sources:
        raise ConfigError("sources", "must be a non-empty list of KIND:LOCATION")
    values["sources"] = tuple(_source(s, i) for i, s in enumerate(sources))
    http = raw.get("http") or {}
    if not isinstance(http, Mapping):
        raise ConfigError("http", "must be a mapping with bind and port")
    port = http.get("port", 8009)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError("http.port", f"must be a port number, got {port!r}")
    values["http_port"] = port
    values["http_bind"] = str(http.get("bind", "127.0.0.1"))
    for key in ("control_secret", "push_secret", "ical_secret", "public_url"):
        values[key] = str(raw.get(key) or "")
    tz = raw.get("timezone", "Europe/Moscow")
    try:
        zoneinfo.ZoneInfo(str(tz))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError("timezone", f"is not a time zone, got {tz!r}") from None
    values["timezone"] = str(tz)
    interval = raw.get("sync_interval_seconds", 30)
    if isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= 86400:
        raise ConfigError(
            "sync_interval_seconds", f"must be a whole number from 1 to 86400, got {interval!r}"
        )
    values["sync_interval_seconds"] = interval
    digest = str(raw.get("digest_time", "07:30"))
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", digest):
        raise ConfigError("digest_time", f"must be HH:MM, got {digest!r}")
    values["digest_time"] = time.fromisoformat(digest)
    if raw.get("templates_dir"):
        values["templates_dir"] = Path(str(raw["templates_dir"]))
    values["log_format"] = parse_log_format(raw)
    return BridgeConfig(**values)


def load_config(path: Path) -> BridgeConfig:
    return load_yaml_config(path, parse_config)
