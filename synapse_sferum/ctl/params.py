"""The parameters of `sferumctl init`: declaring, parsing and remembering them.

Each parameter is declared once (`INIT_OPTIONS`) with one parser, used both for the command line
and for `sferum-init.yaml` (where `init` stores what it was given), so a value is checked the
same way wherever it comes from. `ctl.settings` resolves them into what the templates render.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs

from sferum_shared.config import DIARY_SOURCE_KINDS
from sferum_shared.logs import LOG_FORMATS
from synapse_sferum.config import email_address, has_valid_port, http_url
from synapse_sferum.ctl.ratelimits import (
    DEFAULT_RATE_LIMITS,
    merge_overrides,
    rate_limit_option,
    rate_limit_overrides,
)

DEFAULT_HTTP_PORT = 8008
DEFAULT_BIND = "127.0.0.1"
# With workers: main's, the workers' and Redis's ports count up from here (ctl/workers.py).
DEFAULT_INTERNAL_PORT = 8100
# TURN's registered port (RFC 8656). `--turn-port` alone means this one.
DEFAULT_TURN_PORT = 3478


def port(value: object) -> int:
    text = str(value)
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"must be a TCP port from 1 to 65535, got {value!r}")
    return int(text)


MAX_SFU_EDGES = 16  # each edge is a process: more than the cores of one host helps nobody


def edge_count(value: object) -> int:
    text = str(value)
    if isinstance(value, bool) or not text.isdigit() or not 0 <= int(text) <= MAX_SFU_EDGES:
        raise ValueError(f"must be a number of processes from 0 to {MAX_SFU_EDGES}, got {value!r}")
    return int(text)


MAX_WORKERS = 32  # generic workers for client traffic; more wait on the one database anyway


def worker_count(value: object) -> int:
    text = str(value)
    if isinstance(value, bool) or not text.isdigit() or not 0 <= int(text) <= MAX_WORKERS:
        raise ValueError(f"must be a number of workers from 0 to {MAX_WORKERS}, got {value!r}")
    return int(text)


def worker_hosts(value: object) -> tuple[str, ...]:
    """Addresses, given as ADDR,ADDR,… on the command line or as a YAML list."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ValueError(f"must be IP addresses separated by commas, got {value!r}")
    hosts = tuple(bind_address(str(item).strip()) for item in items)
    for host in hosts:
        if ipaddress.ip_address(host).is_unspecified:
            raise ValueError(f"{host} is no host's address: workers are reached at it")
    return tuple(dict.fromkeys(hosts))


def server_name(value: object) -> str:
    """A Matrix server name (host, optional port), checked by Synapse's own parser."""
    from synapse.util.stringutils import parse_and_validate_server_name

    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a server name like school.example.org, got {value!r}")
    try:
        parse_and_validate_server_name(value)
    except ValueError as e:
        raise ValueError(f"not a valid Matrix server name: {e}") from None
    return value


def bind_address(value: object) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ValueError(f"must be an IP address like 127.0.0.1, got {value!r}") from None


def base_url(value: object) -> str:
    """An http(s) URL that relative paths are joined to, so it ends with a slash."""
    parts = urlsplit(http_url(value))
    return parts.geturl() if parts.path.endswith("/") else parts.geturl() + "/"


def database(value: object) -> str:
    text = str(value)
    if text != "sqlite":
        postgres_args(text)
    return text


def existing_file(value: object) -> str:
    path = Path(str(value)).absolute()
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return str(path)


DEFAULT_DIARY_PORT = 8009
#: Synapse's Prometheus listener (its metrics documentation's port), on loopback unless told.
DEFAULT_METRICS_PORT = 9000
#: The MatrixRTC focus type clients find (.well-known, MSC4143 transports): the SFU speaks
#: LiveKit's signalling (sfu/livekit), the only type Element X and Element Call accept.
SFU_FOCUS_TYPE = "livekit"


def diary_source(value: object) -> str:
    """KIND:LOCATION of a diary source; local paths are made absolute and must exist."""
    text = str(value)
    kind, _, location = text.partition(":")
    if kind not in DIARY_SOURCE_KINDS:
        raise ValueError(
            f"must be KIND:LOCATION with KIND one of {', '.join(DIARY_SOURCE_KINDS)}, got {text!r}"
        )
    if kind in ("oneroster-csv", "ical"):
        path = Path(location).absolute()
        if not location or not path.exists():
            raise ValueError(f"{kind}: no such file or folder: {path}")
        return f"{kind}:{path}"
    if kind == "oneroster-rest" and not location.startswith(("http://", "https://")):
        raise ValueError(f"oneroster-rest needs an http(s) URL, got {location!r}")
    return f"{kind}:{location}" if location else kind


def log_format(value: object) -> str:
    if value not in LOG_FORMATS:
        raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}, got {value!r}")
    return str(value)


def _diary_sources(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"must be a list of KIND:LOCATION, got {value!r}")
    return tuple(dict.fromkeys(diary_source(v) for v in value))


def postgres_args(url: str) -> dict[str, str | int]:
    """psycopg2 connection arguments from postgresql://user:password@host:port/dbname."""
    expected = "expected 'sqlite' or postgresql://user:password@host:port/dbname"
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"{expected}, got {url!r}")
    if not has_valid_port(parts):
        raise ValueError(f"{expected}; the port in {url!r} is not a number")
    dbname = unquote(parts.path.lstrip("/"))
    if not (parts.username and parts.hostname and dbname) or parts.query or parts.fragment:
        raise ValueError(f"{expected}, got {url!r}")
    args: dict[str, str | int] = {"user": unquote(parts.username)}
    if parts.password is not None:
        args["password"] = unquote(parts.password)
    args.update(dbname=dbname, host=parts.hostname, port=parts.port or 5432)
    return args


def _server_names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"must be a list of server names, got {value!r}")
    return tuple(server_name(name) for name in value)


def _optional_tuple(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _optional_dict(
    value: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> dict[str, str] | None:
    """The `--rate-limit` pairs (in the order given: a later one wins) or a stored mapping."""
    return None if value is None else dict(value.items() if isinstance(value, Mapping) else value)


@attrs.frozen
class InitOption:
    """One `init` parameter, declared once: its command-line option and how a value is checked
    (the same parser for the command line and `sferum-init.yaml`)."""

    name: str  # the `InitParams` field and the key in sferum-init.yaml
    parse: Callable[[object], Any]  # a stored value
    metavar: str
    help: str
    flag: str = ""  # default: --name-with-dashes
    # A list option: the parser of one value on the command line, and how argparse gathers them.
    each: Callable[[object], Any] | None = None
    gather: Mapping[str, Any] = attrs.field(factory=dict)  # nargs, action, const

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


# The order is the order of `init --help` and of sferum-init.yaml.
INIT_OPTIONS: tuple[InitOption, ...] = (
    InitOption(
        "server_name",
        server_name,
        "NAME",
        "the Matrix server name, e.g. school1.example.org; fixed once used",
    ),
    InitOption("http_port", port, "N", f"client HTTP port (default {DEFAULT_HTTP_PORT})"),
    InitOption("bind", bind_address, "ADDR", f"IP address to listen on (default {DEFAULT_BIND})"),
    InitOption(
        "database",
        database,
        "URL",
        "sqlite (default) or postgresql://user:password@host:port/dbname",
    ),
    InitOption(
        "public_baseurl", base_url, "URL", "the URL clients use (default http://ADDR:PORT/)"
    ),
    InitOption(
        "federate_with",
        _server_names,
        "SERVER",
        "partner school servers to federate with; give the option alone to federate with none",
        each=server_name,
        gather={"nargs": "*", "action": "extend"},
    ),
    InitOption(
        "federation_port",
        port,
        "N",
        "a separate TLS listener for federation (needs --tls-cert, --tls-key)",
    ),
    InitOption("tls_cert", existing_file, "PATH", "certificate (PEM) of the federation listener"),
    InitOption("tls_key", existing_file, "PATH", "private key (PEM) of the federation listener"),
    InitOption(
        "diary_sources",
        _diary_sources,
        "KIND:LOCATION",
        "run the diary bridge with these sources: oneroster-csv:FOLDER_OR_ZIP, "
        "oneroster-rest:URL, push, ical:FILE",
        flag="--diary-source",
        each=diary_source,
        gather={"nargs": "+", "action": "extend"},
    ),
    InitOption(
        "diary_port",
        port,
        "N",
        f"the diary bridge's local HTTP port (default {DEFAULT_DIARY_PORT})",
    ),
    InitOption(
        "turn_port",
        port,
        "N",
        "run coturn (Debian's package) for calls on this UDP/TCP port "
        f"(alone: {DEFAULT_TURN_PORT}) and hand out its credentials to users",
        gather={"nargs": "?", "const": DEFAULT_TURN_PORT},
    ),
    InitOption(
        "sfu_port",
        port,
        "N",
        "run the SFU (group calls: lessons, broadcasts) on this TCP port and announce it "
        "to clients in .well-known/matrix/client",
    ),
    InitOption(
        "sfu_public_url",
        base_url,
        "URL",
        "where clients reach the SFU through a reverse proxy (https://…; browsers only "
        "give cameras to https pages); default: http://HOST:SFU-PORT",
    ),
    InitOption(
        "sfu_edges",
        edge_count,
        "N",
        "run N more SFU processes on the ports after --sfu-port that relay broadcasts to "
        "their viewers (0 to drop them): a broadcast's audience grows with the cores",
    ),
    InitOption(
        "workers",
        worker_count,
        "N",
        "run Synapse as workers behind nginx (needs --database postgresql://…): N generic "
        "workers for client traffic, a federation reader, an event persister, a federation "
        "sender, a pusher, a background worker and a media worker, with Redis; 0: one process",
    ),
    InitOption(
        "worker_hosts",
        worker_hosts,
        "ADDR,ADDR",
        "the hosts the workers run on, in turn (default: the main host); each binds and is "
        "reached at its address",
    ),
    InitOption(
        "internal_port",
        port,
        "N",
        f"with --workers: the first of the consecutive ports of the processes behind nginx "
        f"(default {DEFAULT_INTERNAL_PORT})",
    ),
    InitOption(
        "rate_limits",
        rate_limit_overrides,
        "NAME=PER_SECOND/BURST",
        "change one of Synapse's rate limits from the school's default (NAME=default "
        "goes back to it; the others set before are kept): "
        + ", ".join(f"{name} ({rate})" for name, rate in DEFAULT_RATE_LIMITS.items()),
        flag="--rate-limit",
        each=rate_limit_option,
        gather={"action": "append"},
    ),
    InitOption(
        "metrics_port",
        port,
        "N",
        "Synapse's Prometheus metrics listener (/_synapse/metrics; default "
        f"{DEFAULT_METRICS_PORT}); prometheus.yml lists it with the bridge's and the SFU's",
    ),
    InitOption(
        "metrics_bind",
        bind_address,
        "ADDR",
        f"IP address of the metrics listener (default {DEFAULT_BIND}: only this machine's "
        "Prometheus reads it)",
    ),
    InitOption(
        "log_format",
        log_format,
        "FORMAT",
        "how Synapse (homeserver.log), the bridge and the SFU log: json (default, one object "
        "per line with time, level, logger, message and context) or text",
    ),
    InitOption(
        "support_email",
        email_address,
        "ADDR",
        "the address people write to about the server (its administrator), which apps find "
        "at /.well-known/matrix/support",
    ),
    InitOption(
        "support_page",
        http_url,
        "URL",
        "the school's help page (http:// or https://), also at /.well-known/matrix/support",
    ),
)
PARSERS: Mapping[str, Callable[[object], Any]] = {o.name: o.parse for o in INIT_OPTIONS}


@attrs.frozen
class InitParams:
    """What `init` was told; None means "not given", so an older value or the default applies."""

    server_name: str | None = None
    http_port: int | None = None
    bind: str | None = None
    database: str | None = None
    public_baseurl: str | None = None
    federate_with: tuple[str, ...] | None = attrs.field(default=None, converter=_optional_tuple)
    federation_port: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    diary_sources: tuple[str, ...] | None = attrs.field(default=None, converter=_optional_tuple)
    diary_port: int | None = None
    turn_port: int | None = None
    sfu_port: int | None = None
    sfu_public_url: str | None = None
    sfu_edges: int | None = None
    workers: int | None = None
    worker_hosts: tuple[str, ...] | None = attrs.field(default=None, converter=_optional_tuple)
    internal_port: int | None = None
    # Synapse rate limits that differ from ours, {NAME: "PER_SECOND/BURST"} (ratelimits.py).
    rate_limits: dict[str, str] | None = attrs.field(default=None, converter=_optional_dict)
    metrics_port: int | None = None
    metrics_bind: str | None = None
    log_format: str | None = None
    support_email: str | None = None
    support_page: str | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> InitParams:
        """Parses stored parameters; a ValueError names the key."""
        values = {}
        for key, value in raw.items():
            parse = PARSERS.get(key)
            if parse is None:
                raise ValueError(f"{key}: unknown key; allowed keys: {', '.join(PARSERS)}")
            try:
                values[key] = None if value is None else parse(value)
            except ValueError as e:
                raise ValueError(f"{key}: {e}") from None
        return cls(**values)

    def _given(self) -> dict[str, Any]:
        return {k: v for k, v in attrs.asdict(self, recurse=False).items() if v is not None}

    def to_yaml(self) -> dict[str, Any]:
        """The parameters that were given, as plain YAML values."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._given().items()}

    def over(self, older: InitParams) -> InitParams:
        """These parameters, falling back to `older` for those not given. Rate limits merge:
        one given now changes that limit and keeps the others set before."""
        given = self._given()
        if self.rate_limits is not None:
            merged = merge_overrides(older.rate_limits or {}, self.rate_limits)
            given["rate_limits"] = merged or None
        return attrs.evolve(older, **given)
