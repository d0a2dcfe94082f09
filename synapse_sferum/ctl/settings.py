"""What `sferumctl init` renders: its parameters resolved into complete, checked settings.

`params` says what was given (on the command line or in sferum-init.yaml); this module fills in
the defaults and checks the parameters against each other (ports that clash, options that need
others), so the templates only ever see a whole, consistent deployment.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import attrs

from synapse_sferum.ctl.params import (
    DEFAULT_BIND,
    DEFAULT_DIARY_PORT,
    DEFAULT_HTTP_PORT,
    DEFAULT_INTERNAL_PORT,
    DEFAULT_METRICS_PORT,
    InitParams,
    postgres_args,
)
from synapse_sferum.ctl.ratelimits import Rate, resolve_rate_limits
from synapse_sferum.ctl.workers import Endpoint, Topology, internal_ports, plan


@attrs.frozen
class Database:
    """Synapse's `database:` section."""

    name: str  # sqlite3 or psycopg2
    args: Mapping[str, str | int]


@attrs.frozen
class FederationListener:
    port: int
    tls_cert: str
    tls_key: str


@attrs.frozen
class Settings:
    """Complete, checked settings that the templates render."""

    server_name: str
    http_port: int
    bind: str
    database: Database
    public_baseurl: str
    federate_with: tuple[str, ...]
    federation: FederationListener | None
    diary_sources: tuple[str, ...] = ()
    diary_port: int = DEFAULT_DIARY_PORT
    database_url: str = "sqlite"
    # coturn's listening port (UDP and TCP); None: no TURN server, so no calls through relays.
    turn_port: int | None = None
    # The SFU's port (auth routes, /health, /ws); None: no SFU, no calls announced to clients.
    sfu_port: int | None = None
    # Where clients reach the SFU when a reverse proxy serves it (with TLS) elsewhere.
    sfu_proxy_url: str | None = None
    # Ports of the SFU's edge processes (broadcast fan-out, `sfu.edge`): the next ones after it.
    sfu_edge_ports: tuple[int, ...] = ()
    # Synapse's rate limits, by key without `rc_` (ratelimits.DEFAULT_RATE_LIMITS, overridden).
    rate_limits: Mapping[str, Rate] = attrs.field(factory=lambda: resolve_rate_limits({}))
    # The module's `support:` (MSC1929's /.well-known/matrix/support); None: not said.
    support_email: str | None = None
    support_page: str | None = None
    # Synapse's Prometheus listener (`enable_metrics`), always on, loopback unless told.
    metrics_port: int = DEFAULT_METRICS_PORT
    metrics_bind: str = DEFAULT_BIND
    log_format: str = "json"  # params.LOG_FORMATS
    # `--workers N`: Synapse's processes behind nginx (ctl/workers.py); None: one process.
    topology: Topology | None = None

    @property
    def sfu_edge_urls(self) -> tuple[str, ...]:
        """Where clients reach each edge (a broadcast's viewers are sent there)."""
        return tuple(f"http://{self.turn_host}:{port}" for port in self.sfu_edge_ports)

    @property
    def sfu_public_url(self) -> str | None:
        """Where clients reach the SFU: `--sfu-public-url`, else the server's host and the SFU's
        port. The SFU serves no TLS itself: browsers need https for cameras outside localhost,
        so a real school puts it behind the same TLS proxy as Synapse and names that URL.
        """
        if self.sfu_port is None:
            return None
        if self.sfu_proxy_url is not None:
            return self.sfu_proxy_url.rstrip("/")
        return f"http://{self.turn_host}:{self.sfu_port}"

    @property
    def turn_uris(self) -> tuple[str, ...]:
        """coturn's URIs, as Synapse hands them out and the SFU gives its clients."""
        if self.turn_port is None:
            return ()
        return tuple(
            f"turn:{self.turn_host}:{self.turn_port}?transport={transport}"
            for transport in ("udp", "tcp")
        )

    @property
    def turn_host(self) -> str:
        """The host in `turn:` URIs: the one clients already reach the server at."""
        host = urlsplit(self.public_baseurl).hostname or self.bind
        return f"[{host}]" if ":" in host else host

    @property
    def turn_listening_ip(self) -> str | None:
        """The address coturn listens and relays on; None (all addresses) for a wildcard bind."""
        return None if ipaddress.ip_address(self.bind).is_unspecified else self.bind

    @property
    def turn_loopback_only(self) -> bool:
        """Whether coturn is reachable from this machine only, which makes loopback peers safe.

        Relaying to 127.0.0.0/8 is otherwise refused (it would reach local services); but when
        coturn itself listens on loopback, only local processes can use it at all, and two local
        peers (the integration test, a developer's two browsers) relay to each other there.
        """
        return ipaddress.ip_address(self.bind).is_loopback

    @property
    def local_client_url(self) -> str:
        """How processes on this machine (Synapse itself, sferumctl) reach the client listener."""
        ip = ipaddress.ip_address(self.bind)
        if ip.is_unspecified:
            ip = ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1")
        host = str(ip) if ip.version == 4 else f"[{ip}]"
        return f"http://{host}:{self.http_port}"


def resolve(params: InitParams, sqlite_path: Path) -> Settings:
    """Fills in defaults and checks the parameters against each other (ValueError on a clash)."""
    if params.server_name is None:
        raise ValueError("--server-name is required for a new deployment")
    http_port = params.http_port or DEFAULT_HTTP_PORT
    bind = params.bind or DEFAULT_BIND
    host = ipaddress.ip_address(bind)
    if params.public_baseurl is None and host.is_unspecified:
        raise ValueError(
            f"--public-baseurl is required with --bind {bind}: clients need an "
            "address they can reach"
        )
    url_host = f"[{bind}]" if host.version == 6 else bind

    if params.database in (None, "sqlite"):
        db = Database("sqlite3", {"database": str(sqlite_path)})
    else:
        db = Database("psycopg2", {**postgres_args(params.database), "cp_min": 1, "cp_max": 10})

    tls = (params.tls_cert, params.tls_key)
    federation = None
    if params.federation_port is not None:
        if params.tls_cert is None or params.tls_key is None:
            raise ValueError(
                "--federation-port needs --tls-cert and --tls-key: Synapse's "
                "federation client only speaks TLS"
            )
        if params.federation_port == http_port:
            raise ValueError(f"--federation-port must differ from --http-port ({http_port})")
        federation = FederationListener(params.federation_port, params.tls_cert, params.tls_key)
    elif tls != (None, None):
        raise ValueError("--tls-cert and --tls-key are only used with --federation-port")

    taken = {"--http-port": http_port}
    if federation is not None:
        taken["--federation-port"] = federation.port
    if params.diary_sources:
        taken["--diary-port"] = params.diary_port or DEFAULT_DIARY_PORT
    metrics_port = params.metrics_port or DEFAULT_METRICS_PORT
    for option, wanted in (
        ("--metrics-port", metrics_port),
        ("--turn-port", params.turn_port),
        ("--sfu-port", params.sfu_port),
    ):
        if wanted is None:
            continue
        for other, used in taken.items():
            if wanted == used:
                raise ValueError(f"{option} must differ from {other} ({used})")
        taken[option] = wanted
    if params.sfu_public_url is not None and params.sfu_port is None:
        raise ValueError("--sfu-public-url needs --sfu-port: it is where that SFU is reached")
    edge_ports = _sfu_edge_ports(params, taken)
    topology = _topology(params, bind, http_port, taken)

    return Settings(
        server_name=params.server_name,
        http_port=http_port,
        bind=bind,
        database=db,
        public_baseurl=params.public_baseurl or f"http://{url_host}:{http_port}/",
        # The server itself is always federated with (the whitelist must name it); not a partner.
        federate_with=tuple(
            dict.fromkeys(s for s in params.federate_with or () if s != params.server_name)
        ),
        federation=federation,
        diary_sources=params.diary_sources or (),
        diary_port=params.diary_port or DEFAULT_DIARY_PORT,
        database_url=params.database or "sqlite",
        turn_port=params.turn_port,
        sfu_port=params.sfu_port,
        sfu_proxy_url=params.sfu_public_url,
        sfu_edge_ports=edge_ports,
        rate_limits=resolve_rate_limits(params.rate_limits or {}),
        support_email=params.support_email,
        support_page=params.support_page,
        metrics_port=metrics_port,
        metrics_bind=params.metrics_bind or DEFAULT_BIND,
        log_format=params.log_format or "json",
        topology=topology,
    )


def _topology(
    params: InitParams, bind: str, http_port: int, taken: Mapping[str, int]
) -> Topology | None:
    """`--workers N`: the processes; main, Redis and nginx on this host (--bind)."""
    if params.workers is None and (params.worker_hosts or params.internal_port):
        raise ValueError("--worker-hosts and --internal-port are only used with --workers N")
    if not params.workers:  # `--workers 0` keeps them for a later `--workers N`
        return None
    ip = ipaddress.ip_address(bind)
    main_host = ("127.0.0.1" if ip.version == 4 else "::1") if ip.is_unspecified else bind
    first = params.internal_port or DEFAULT_INTERNAL_PORT
    database = params.database or "sqlite"
    topology = plan(
        workers=params.workers,
        worker_hosts=params.worker_hosts or (),
        main_host=main_host,
        proxy=Endpoint(bind, http_port),
        first_port=first,
        database_host=None if database == "sqlite" else str(postgres_args(database)["host"]),
    )
    last = first + internal_ports(params.workers) - 1
    for option, used in taken.items():
        if option != "--http-port" and first <= used <= last:
            raise ValueError(
                f"--internal-port {first}: ports {first}-{last} would take {option} ({used})"
            )
    return topology


def _sfu_edge_ports(params: InitParams, taken: Mapping[str, int]) -> tuple[int, ...]:
    """The edges' ports: the SFU's port plus 1, 2, …, each free of the other listeners."""
    if not params.sfu_edges:
        return ()
    if params.sfu_port is None:
        raise ValueError("--sfu-edges needs --sfu-port: edges relay that SFU's broadcasts")
    if params.sfu_public_url is not None:
        raise ValueError(
            "--sfu-edges cannot be combined with --sfu-public-url: behind a proxy, give each "
            "edge its public URL by hand (origin_url and edge_urls in the sfu*.yaml files)"
        )
    ports = tuple(params.sfu_port + k for k in range(1, params.sfu_edges + 1))
    for port_ in ports:
        if port_ > 65535:
            raise ValueError(f"--sfu-edges {params.sfu_edges}: port {port_} is past 65535")
        for option, used in taken.items():
            if port_ == used:
                raise ValueError(f"--sfu-edges: an edge's port {port_} is {option}'s")
    return ports
