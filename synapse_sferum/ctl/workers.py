"""A deployment's Synapse processes when it runs as workers: who does what, where, on which port.

`plan` is pure: from the resolved `init` parameters it makes the `Topology` that the templates
render (homeserver.yaml's shared worker settings, one config per worker, nginx.conf) and that
`sferumctl start` turns into processes. The layout follows Synapse's docs/workers.md:

- main keeps the streams other than events (typing, to_device, account_data, receipts,
  presence, push_rules: quiet hours write push rules there), Synapse's admin API and whatever
  no worker serves; at school scale those are light, and another process would cost ~125 MB;
- `client-K` (generic workers) share the client traffic behind nginx;
- `federation-reader` answers other servers, `federation-sender` and `pusher` only send;
- `event-persister` writes every event (`stream_writers.events`);
- `background` runs Synapse's background tasks and the module's (reconciles, mirroring), so it
  also serves the module's endpoints (/_synapse/client/sferum/): its admin API drives the
  provisioner that lives there;
- `media` is the media repository (uploads, downloads, thumbnails, media admin API).

Every process listens on one address (its host) and the ports are consecutive from
`--internal-port`, so a firewall rule per host covers them. A Prometheus listener would be one
more `Listener` (resources `metrics`) per process.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping

import attrs

MAIN = "main"  # Synapse's own name for the main process in instance_map and the like
GENERIC_APP = "synapse.app.generic_worker"
MAIN_APP = "synapse.app.homeserver"

# Roles of workers, in the order their ports are given out (after main's two and Redis's).
CLIENT = "client"
FEDERATION_READER = "federation_reader"
EVENT_PERSISTER = "event_persister"
FEDERATION_SENDER = "federation_sender"
PUSHER = "pusher"
BACKGROUND = "background"
MEDIA = "media"

# role -> (worker name, the resources of its one HTTP listener). Every listener serves /health.
_SINGLE_ROLES: Mapping[str, tuple[str, tuple[str, ...]]] = {
    FEDERATION_READER: ("federation-reader", ("federation",)),
    EVENT_PERSISTER: ("event-persister", ("replication",)),
    FEDERATION_SENDER: ("federation-sender", ("health",)),
    PUSHER: ("pusher", ("health",)),
    # `client`: the module's web resources (admin API, join page, phone checks) need an HTTP
    # listener, and its client resource lets the module's own API calls resolve here.
    BACKGROUND: ("background", ("client",)),
    MEDIA: ("media", ("media",)),
}
# Main's ports, Redis's, one per worker, then each worker's metrics listener (main's is
# --metrics-port): --internal-port N takes the ports N … N + internal_ports(workers) - 1.
FIXED_PORTS = 3 + len(_SINGLE_ROLES)


def internal_ports(workers: int) -> int:
    """How many ports from --internal-port a deployment of `workers` client workers takes."""
    return FIXED_PORTS + workers + (workers + len(_SINGLE_ROLES))


@attrs.frozen
class Listener:
    port: int
    resources: tuple[str, ...]


@attrs.frozen
class Process:
    """One Synapse process: main or a worker."""

    name: str  # worker_name, and the name in instance_map, logs and PID files
    app: str
    role: str
    host: str  # the address it binds to, and where the others reach it
    listeners: tuple[Listener, ...]
    # A worker's Prometheus listener (`type: metrics`, on its host); main's is --metrics-port.
    metrics_port: int | None = None

    @property
    def port(self) -> int:
        """Its first listener's port: where nginx reaches it and /health answers."""
        return self.listeners[0].port

    def port_of(self, resource: str) -> int | None:
        return next((lst.port for lst in self.listeners if resource in lst.resources), None)

    @property
    def address(self) -> str:
        """host:port as nginx's `server` lines and URLs write it (IPv6 in brackets)."""
        return f"{_url_host(self.host)}:{self.port}"


@attrs.frozen
class Endpoint:
    host: str
    port: int

    def with_port(self, port: int) -> Endpoint:
        return attrs.evolve(self, port=port)

    @property
    def address(self) -> str:
        return f"{_url_host(self.host)}:{self.port}"


@attrs.frozen
class Topology:
    main: Process
    workers: tuple[Process, ...]
    redis: Endpoint
    proxy: Endpoint  # nginx: the deployment's public client port

    @property
    def processes(self) -> tuple[Process, ...]:
        return (self.main, *self.workers)

    def with_role(self, role: str) -> tuple[Process, ...]:
        return tuple(p for p in self.workers if p.role == role)

    def one(self, role: str) -> Process:
        [process] = self.with_role(role)
        return process

    @property
    def instance_map(self) -> dict[str, Endpoint]:
        """Processes others call over HTTP replication: main and the stream writers."""
        writers = [p for p in self.processes if p.port_of("replication") is not None]
        return {p.name: Endpoint(p.host, p.port_of("replication") or 0) for p in writers}

    def upstreams(self) -> dict[str, tuple[str, ...]]:
        """nginx's upstream groups (name -> host:port of each member), as ROUTES name them."""
        clients = tuple(p.address for p in self.with_role(CLIENT))
        return {
            "sync": clients,
            "room": clients,
            "client": clients,
            "federation": (self.one(FEDERATION_READER).address,),
            "media": (self.one(MEDIA).address,),
            "module": (self.one(BACKGROUND).address,),
            "main": (self.main.address,),
        }


# How nginx sends each request on, in order (its first matching regex wins); anything else goes
# to main. From Synapse's docs/workers.md: the generic worker's endpoints, sync sticky per user,
# pagination and event sending by room, federation to the reader, media to the media worker.
_V = "(api/v1|r0|v3|unstable)"
_R = "(r0|v3|unstable)"
ROUTES: tuple[tuple[str, str], ...] = (
    # The module's endpoints: its admin API drives the provisioner on the background worker.
    ("^/_synapse/client/sferum/", "module"),
    ("^/_matrix/media/", "media"),
    ("^/_matrix/client/v1/media/", "media"),
    ("^/_matrix/federation/v1/media/", "media"),
    (
        "^/_synapse/admin/v1/(purge_media_cache$|room/.*/media|user/.*/media|media/"
        "|quarantine_media/)",
        "media",
    ),
    ("^/_matrix/client/(r0|v3)/sync$", "sync"),
    ("^/_matrix/client/(api/v1|r0|v3)/events$", "sync"),
    ("^/_matrix/client/(api/v1|r0|v3)/initialSync$", "sync"),
    ("^/_matrix/client/(api/v1|r0|v3)/rooms/[^/]+/initialSync$", "sync"),
    (f"^/_matrix/client/{_V}/rooms/[^/]+/messages$", "room"),
    (f"^/_matrix/client/{_V}/rooms/[^/]+/(redact|send|state/)", "room"),
    (f"^/_matrix/client/{_V}/rooms/[^/]+/(join|invite|leave|ban|unban|kick)$", "room"),
    (
        "^/_matrix/federation/v1/(version$|event/|state/|state_ids/|backfill/"
        "|get_missing_events/|publicRooms|query/|make_join/|make_leave/|make_knock/"
        "|send_knock/|event_auth/|timestamp_to_event/|exchange_third_party_invite/"
        "|user/devices/|hierarchy/|send/)",
        "federation",
    ),
    ("^/_matrix/federation/(v1|v2)/(send_join|send_leave|invite)/", "federation"),
    ("^/_matrix/key/v2/query", "federation"),
    (
        f"^/_matrix/client/{_V}/(createRoom$|publicRooms$|rooms/.*/joined_members$"
        "|rooms/.*/context/|rooms/.*/members$|rooms/.*/state$|login$|voip/turnServer$"
        "|rooms/.*/event/|joined_rooms$|search$|directory/room/|join/|knock/|profile/"
        "|devices(/|$)|keys/device_signing/upload$|keys/signatures/upload$)",
        "client",
    ),
    (
        f"^/_matrix/client/{_R}/(account/3pid$|account/whoami$|account/deactivate$"
        "|user/.*/filter(/|$)|capabilities$|notifications$|keys/query$|keys/changes$"
        "|keys/claim$|room_keys/|keys/upload|register$|register/available$"
        "|password_policy$|user_directory/search$)",
        "client",
    ),
    ("^/_matrix/client/(r0|v3)/delete_devices$", "client"),
    ("^/_matrix/client/v1/rooms/.*/(hierarchy|threads|timestamp_to_event)$", "client"),
    ("^/_matrix/client/(v1|unstable)/rooms/.*/relations/", "client"),
    ("^/_matrix/client/v1/register/m.login.registration_token/validity$", "client"),
    ("^/_matrix/client/versions$", "client"),
    ("^/.well-known/matrix/", "client"),
)

# What nginx's TLS federation port serves: what main's federation listener serves without
# workers (Synapse's federation and server-key APIs, media, and the module's resources, which
# Synapse puts on every listener). Partner servers reach that port; the client API and Synapse's
# admin API are not there, as they are not on main's federation listener.
FEDERATION_PORT_PREFIXES = (
    "/_matrix/federation/",
    "/_matrix/key/",
    "/_matrix/media/",
    "/_synapse/client/sferum/",
    "/.well-known/matrix/",
)
# nginx's location for those paths that no route of the federation port takes: main serves them.
FEDERATION_PORT_REST = "^(" + "|".join(re.escape(p) for p in FEDERATION_PORT_PREFIXES) + ")"


def federation_port_routes() -> tuple[tuple[str, str], ...]:
    """The ROUTES whose paths all lie under FEDERATION_PORT_PREFIXES, in their order."""
    starts = tuple(f"^{prefix}" for prefix in FEDERATION_PORT_PREFIXES)
    return tuple((pattern, upstream) for pattern, upstream in ROUTES if pattern.startswith(starts))


def plan(
    *,
    workers: int,
    worker_hosts: tuple[str, ...],
    main_host: str,
    proxy: Endpoint,
    first_port: int,
    database_host: str | None,
) -> Topology:
    """The processes of a worker deployment; ValueError names the option that does not fit.

    `main_host` runs main, Redis and nginx; the workers take `worker_hosts` in turn.
    `database_host` is PostgreSQL's host (None: SQLite, which workers cannot share).
    """
    if database_host is None:
        raise ValueError(
            "--workers needs PostgreSQL (every process writes the one database; SQLite allows "
            "one): give --database postgresql://user:password@host:port/dbname, or --workers 0"
        )
    if workers < 1:
        raise ValueError(f"--workers must be at least 1 for a worker deployment, got {workers}")
    hosts = worker_hosts or (main_host,)
    remote = [h for h in hosts if not _loopback(h)]
    if remote and _loopback(main_host):
        raise ValueError(
            f"--worker-hosts {','.join(remote)}: workers on other hosts cannot reach main and "
            f"Redis at {main_host}; give --bind this host's address on their network"
        )
    if remote and _loopback(database_host):
        raise ValueError(
            f"--worker-hosts {','.join(remote)}: workers on other hosts cannot reach PostgreSQL "
            f"at {database_host}; give --database its address on their network"
        )
    last = first_port + internal_ports(workers) - 1
    if last > 65535:
        raise ValueError(f"--internal-port {first_port}: the last port, {last}, is past 65535")
    if first_port <= proxy.port <= last:
        raise ValueError(
            f"--internal-port {first_port}: ports {first_port}-{last} would take --http-port "
            f"({proxy.port})"
        )

    ports = iter(range(first_port, last + 1))
    main = Process(
        MAIN,
        MAIN_APP,
        MAIN,
        main_host,
        (
            Listener(next(ports), ("client", "federation")),
            Listener(next(ports), ("replication",)),
        ),
    )
    redis = Endpoint(main_host, next(ports))
    host_cycle = _cycle(hosts)
    records = [
        Process(
            f"client-{k}",
            GENERIC_APP,
            CLIENT,
            next(host_cycle),
            (Listener(next(ports), ("client",)),),
        )
        for k in range(1, workers + 1)
    ]
    for role, (name, resources) in _SINGLE_ROLES.items():
        records.append(
            Process(name, GENERIC_APP, role, next(host_cycle), (Listener(next(ports), resources),))
        )
    metered = tuple(attrs.evolve(p, metrics_port=next(ports)) for p in records)
    return Topology(main, metered, redis, proxy)


def _cycle(hosts: tuple[str, ...]) -> Iterator[str]:
    while True:
        yield from hosts


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: localhost is the only loopback one worth knowing
        return host == "localhost"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
