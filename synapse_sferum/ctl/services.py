"""The processes of a deployment: start them under a supervisor, check their health, stop them.

Each service is one `Service` record; the diary bridge, the SFU and coturn join Synapse as more
records in `deployment_services`. `start` runs one supervisor process per deployment
(`supervisor.py`), which spawns the services and restarts a failed one with back-off
(`supervision.py`); `stop` stops the supervisor, which stops the services. Every process keeps
a PID file. A PID file alone is never trusted: after a reboot its number may belong to a
stranger, so a PID counts as ours only while /proc/PID/cmdline (Linux) still shows the process's
identifying arguments.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

import synapse_sferum
from sferum_shared import SYSTEM_CLOCK
from synapse_sferum.ctl.deployment import (
    Deployment,
    client_base_url,
    proxy_base_url,
    read_yaml_mapping,
)
from synapse_sferum.ctl.errors import CtlError
from synapse_sferum.ctl.http import open_local
from synapse_sferum.ctl.supervision import RUNNING, WAITING, ServiceState, read_states
from synapse_sferum.ctl.workers import GENERIC_APP

Say = Callable[[str], None]

DEFAULT_START_TIMEOUT = 60.0
STOP_GRACE_SECONDS = 20.0
LOG_TAIL_LINES = 20
_POLL_SECONDS = 0.25


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _path(value: str | os.PathLike[str]) -> Path:
    return Path(value)


@attrs.frozen
class Service:
    """One process of a deployment. Plain data (it goes to the supervisor as JSON): the
    converters take back the lists and strings that JSON gives."""

    name: str
    argv: tuple[str, ...] = attrs.field(converter=_strings)
    # Arguments that only this service's process has: they identify it in /proc/PID/cmdline.
    identity: tuple[str, ...] = attrs.field(converter=_strings)
    # http://HOST:PORT/PATH (healthy on a 200), or stun:HOST:PORT for a STUN/TURN server
    # (healthy when it answers a STUN binding request over UDP). None when the config is
    # unreadable: then never healthy.
    health_url: str | None
    log_path: Path = attrs.field(converter=_path)
    pid_path: Path = attrs.field(converter=_path)
    cwd: Path = attrs.field(converter=_path)
    env: Mapping[str, str] = attrs.field(factory=dict)
    # Said when argv[0] cannot be run, e.g. a system package that is not installed.
    install_hint: str | None = None
    # Services (by name) to start first. `after`: this one copes while they are down (systemd
    # After= and Wants=). `requires`: it cannot run without them, so the supervisor starts it
    # only once they answer their health checks (systemd: After= and Requires=).
    after: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    requires: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    # It tells systemd when it is ready (sd_notify READY=1, as Synapse does): Type=notify, so
    # that the units after it wait for that rather than for its start.
    sd_notify: bool = False
    # Seconds from SIGTERM to SIGKILL when it is stopped (systemd's TimeoutStopSec=).
    stop_grace: float = STOP_GRACE_SECONDS
    # The address of the host it runs on, for `--host`; None: wherever Synapse's main runs.
    host: str | None = None

    def running_pid(self) -> int | None:
        """The PID in the PID file, if that process is alive and is this service."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):  # no PID file, or not ours to read, or garbage
            return None
        return pid if self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        # A zombie (exited, not yet reaped) has an empty cmdline, so it does not count.
        return set(self.identity) <= set(os.fsdecode(raw).split("\0"))

    def healthy(self) -> bool:
        if self.health_url is None:
            return False
        if self.health_url.startswith("stun:"):
            return _stun_answers(self.health_url)
        if self.health_url.startswith("redis:"):
            return _redis_answers(self.health_url)
        try:
            with open_local(self.health_url, timeout=2) as response:
                return response.status == 200
        except OSError:  # URLError, HTTPError, timeouts and refused connections
            return False


STUN_MAGIC_COOKIE = 0x2112A442
_STUN_BINDING_REQUEST = 0x0001
_STUN_BINDING_SUCCESS = 0x0101


def _stun_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether a STUN binding request to stun:HOST:PORT gets a success response over UDP.

    coturn (Debian's build) has no HTTP health endpoint and no Prometheus exporter; a TCP
    connect would only show that something listens. A binding request needs no credentials and
    is answered by coturn's own UDP listener, the one calls use.
    """
    parts = urlsplit(url.replace("stun:", "stun://", 1))
    if parts.hostname is None or parts.port is None:
        return False
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI12s", _STUN_BINDING_REQUEST, 0, STUN_MAGIC_COOKIE, transaction)
    try:
        family, _, _, _, address = socket.getaddrinfo(
            parts.hostname, parts.port, type=socket.SOCK_DGRAM
        )[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(request, address)
            reply = sock.recv(2048)
    except OSError:  # timeouts, refusals (ICMP port unreachable), unresolvable hosts
        return False
    if len(reply) < 20:
        return False
    kind, _, cookie, echoed = struct.unpack("!HHI12s", reply[:20])
    return (kind, cookie, echoed) == (_STUN_BINDING_SUCCESS, STUN_MAGIC_COOKIE, transaction)


def _redis_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether redis:HOST:PORT answers a PING (Redis has no HTTP endpoint): PONG, or that it
    wants the password first, which only a running Redis says."""
    parts = urlsplit(url.replace("redis:", "redis://", 1))
    if parts.hostname is None or parts.port is None:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def _redis_service(deployment: Deployment) -> Service:
    """The deployment's Redis (`init --workers`): Synapse's processes talk through it.

    Redis rewrites its process title (proc-title-template in redis.conf) into one string,
    which is what /proc/PID/cmdline then shows.
    """
    config = deployment.redis_config
    argv = ("redis-server", str(config))
    options: dict[str, str] = {}
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in config.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(" ")
            options.setdefault(key, value.strip())
    port, host = options.get("port", ""), options.get("bind", "127.0.0.1").split()[0]
    return Service(
        name="redis",
        argv=argv,
        identity=(" ".join(argv),),
        health_url=f"redis:{_url_host(host)}:{port}" if port.isdigit() else None,
        log_path=deployment.logs / "redis.out",
        pid_path=deployment.run / "redis.pid",
        cwd=deployment.root,
        install_hint="redis-server is in Debian's redis-server package: "
        "apt-get install redis-server",
    )


def _nginx_service(deployment: Deployment) -> Service:
    """nginx in front of the workers; healthy when it answers on the deployment's client port.

    nginx's master process shows `nginx: master process ARGV` as its one-string title.
    """
    config = deployment.nginx_config
    argv = ("nginx", "-e", str(deployment.logs / "nginx-error.log"), "-c", str(config))
    return Service(
        name="nginx",
        argv=argv,
        identity=(f"nginx: master process {' '.join(argv)}",),
        health_url=nginx_health_url(config),
        log_path=deployment.logs / "nginx.out",
        pid_path=deployment.run / "nginx.pid",
        cwd=deployment.root,
        install_hint="nginx is in Debian's nginx package: apt-get install nginx",
        after=("synapse",),  # it answers 502 for what is down, and serves on
    )


def nginx_health_url(nginx_config: Path) -> str | None:
    """http://ADDR/_sferum/proxy-health: nginx's own answer on the client port."""
    base = proxy_base_url(nginx_config)
    return None if base is None else f"{base}/_sferum/proxy-health"


def _first_listener(worker_config: Path) -> tuple[str, int] | None:
    """The address and port of a worker's first listener; None if its file names none."""
    try:
        config = read_yaml_mapping(worker_config) or {}
    except CtlError:
        return None
    listeners = config.get("worker_listeners")
    first = listeners[0] if isinstance(listeners, list) and listeners else None
    if not isinstance(first, Mapping) or not isinstance(first.get("port"), int):
        return None
    hosts = first.get("bind_addresses") or ["127.0.0.1"]
    return str(hosts[0]), first["port"]


def worker_host(worker_config: Path) -> str | None:
    listener = _first_listener(worker_config)
    return None if listener is None else listener[0]


def worker_health_url(worker_config: Path) -> str | None:
    """http://HOST:PORT/health of a worker's first listener; None if its file names none."""
    listener = _first_listener(worker_config)
    if listener is None:
        return None
    host, port = listener
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://{_url_host(host)}:{port}/health"


def on_host(services: Sequence[Service], host: str | None) -> list[Service]:
    """The services that run on `host` (None: all): the workers bound to it, and, if it is
    Synapse main's address, everything that is not a worker."""
    if host is None:
        return list(services)
    main_host = next((s.host for s in services if s.name == "synapse"), None)
    found = [s for s in services if (s.host or main_host) == host]
    if not found:
        known = sorted({h for s in services if (h := s.host or main_host)})
        raise CtlError(f"no process runs on {host}; the hosts are: {', '.join(known)}")
    return found


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def turn_health_url(turn_config: Path) -> str | None:
    """stun:HOST:PORT of the coturn that `turn_config` sets up; None if the file is unreadable."""
    try:
        lines = turn_config.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    options: dict[str, str] = {}
    for line in lines:
        key, _, value = line.split("#", 1)[0].strip().partition("=")
        options.setdefault(key.strip(), value.strip())
    port = options.get("listening-port", "3478")
    if not port.isdigit():
        return None
    host = options.get("listening-ip") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"stun:{f'[{host}]' if ':' in host else host}:{port}"


def sfu_health_url(sfu_config: Path) -> str | None:
    """http://HOST:PORT/health of the SFU that `sfu_config` sets up; None if it names no port."""
    http = (read_yaml_mapping(sfu_config) or {}).get("http")
    if not isinstance(http, Mapping):
        return None
    port, host = http.get("port"), http.get("bind") or "127.0.0.1"
    if not isinstance(port, int) or not isinstance(host, str):
        return None
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/health"


def deployment_services(deployment: Deployment, config: Mapping[str, Any] | None) -> list[Service]:
    """The deployment's services, in start order, for its merged config (None if unreadable)."""
    homeserver = str(deployment.homeserver_config)
    config_args = [arg for path in deployment.config_files() for arg in ("-c", str(path))]
    python_path = _python_path()

    def python_service(name: str, module: str, config_file: Path, health: str | None) -> Service:
        """One of our own processes: `python -m MODULE CONFIG`."""
        return Service(
            name=name,
            argv=(sys.executable, "-m", module, str(config_file)),
            identity=(module, str(config_file)),
            health_url=health,
            log_path=deployment.logs / f"{name}.out",
            pid_path=deployment.run / f"{name}.pid",
            cwd=deployment.root,
            env={"PYTHONPATH": python_path},
            after=("synapse",),  # they wait for Synapse by themselves while it is down
        )

    redis = [_redis_service(deployment)] if deployment.redis_config.exists() else []
    services = [
        *redis,
        Service(
            name="synapse",
            argv=(sys.executable, "-m", "synapse.app.homeserver", *config_args),
            identity=("synapse.app.homeserver", homeserver),
            health_url=None if config is None else f"{client_base_url(config)}/health",
            log_path=deployment.logs / "synapse.out",
            pid_path=deployment.run / "synapse.pid",
            cwd=deployment.root,
            env={"PYTHONPATH": python_path},
            sd_notify=True,
            requires=("redis",) if redis else (),  # with workers, main needs Redis from its start
            host=None if config is None else urlsplit(client_base_url(config)).hostname,
        ),
    ]
    # `init --workers`: each worker runs with the shared files, then its own.
    for path in sorted(deployment.workers_dir.glob("*.yaml")):
        services.append(
            Service(
                name=f"synapse-{path.stem}",
                argv=(sys.executable, "-m", GENERIC_APP, *config_args, "-c", str(path)),
                identity=(GENERIC_APP, str(path)),
                health_url=worker_health_url(path),
                log_path=deployment.logs / f"synapse-{path.stem}.out",
                pid_path=deployment.run / f"synapse-{path.stem}.pid",
                cwd=deployment.root,
                env={"PYTHONPATH": python_path},
                # a worker refuses a database whose schema main has not prepared yet
                requires=("synapse",),
                host=worker_host(path),
            )
        )
    if deployment.nginx_config.exists():
        services.append(_nginx_service(deployment))
    turn = deployment.turn_config
    if turn.exists():  # `init --turn-port` was given; older deployments have no TURN
        services.append(
            Service(
                name="coturn",
                argv=("turnserver", "-c", str(turn)),
                identity=("turnserver", str(turn)),
                health_url=turn_health_url(turn),
                log_path=deployment.logs / "coturn.out",
                pid_path=deployment.run / "coturn.pid",
                cwd=deployment.root,
                install_hint="turnserver is in Debian's coturn package: apt-get install coturn",
            )
        )
    bridge = deployment.bridge_config
    if bridge.exists():
        bridge_config = read_yaml_mapping(bridge) or {}
        http = bridge_config.get("http") or {}
        port = http.get("port") if isinstance(http, Mapping) else None
        health = None if port is None else f"http://127.0.0.1:{port}/health"
        services.append(python_service("diary-bridge", "bridges.diary", bridge, health))
    # `init --sfu-port` (older deployments have no SFU), and its edges (`--sfu-edges`).
    sfus = [deployment.sfu_config] if deployment.sfu_config.exists() else []
    for path in sfus + deployment.sfu_edge_configs():  # named sfu, sfu-edge-1, …
        services.append(python_service(path.stem, "sfu", path, sfu_health_url(path)))
    return services


def _python_path() -> str:
    """PYTHONPATH for our own processes: they must load the synapse_sferum this sferumctl
    belongs to (and its bridges, sfu), installed or not."""
    package_root = str(Path(synapse_sferum.__file__).resolve().parents[1])
    return os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)


SUPERVISOR_MODULE = "synapse_sferum.ctl.supervisor"


@attrs.frozen
class Supervision:
    """Services and the supervisor process that keeps them up.

    The supervisor is started as `python -m synapse_sferum.ctl.supervisor SPEC`: SPEC (a JSON
    file that `start` writes) lists the services and names the state file, so the supervisor
    needs no deployment folder and tests can supervise stand-in services.
    """

    services: tuple[Service, ...]
    process: Service  # the supervisor itself
    spec_path: Path
    state_path: Path


def supervised(
    services: Sequence[Service], run: Path, logs: Path, cwd: Path, host: str | None = None
) -> Supervision:
    """`services` kept up by a supervisor whose files are in `run` (PID, spec, state) and
    `logs` (supervisor.out). With `host`, the supervisor of that host's services only: its
    files are named after the host, so hosts sharing one folder keep theirs apart."""
    name = "supervisor" if host is None else f"supervisor-{host}"
    spec = run / f"{name}.json"
    return Supervision(
        services=tuple(services),
        process=Service(
            name=name,
            argv=(sys.executable, "-m", SUPERVISOR_MODULE, str(spec)),
            identity=(SUPERVISOR_MODULE, str(spec)),
            health_url=None,
            log_path=logs / f"{name}.out",
            pid_path=run / f"{name}.pid",
            cwd=cwd,
            env={"PYTHONPATH": _python_path()},
        ),
        spec_path=spec,
        state_path=run / f"{name}-state.json",
    )


def deployment_supervision(
    deployment: Deployment, config: Mapping[str, Any] | None, host: str | None = None
) -> Supervision:
    """The deployment's services under its supervisor; with `host`, those of that host only
    (`on_host`), under a supervisor of their own."""
    found = on_host(deployment_services(deployment, config), host)
    return supervised(found, deployment.run, deployment.logs, deployment.root, host)


def write_spec(supervision: Supervision) -> None:
    """The SPEC file the supervisor reads its services from."""
    spec = {
        "state": str(supervision.state_path),
        "services": [attrs.asdict(s) for s in supervision.services],
    }
    supervision.spec_path.parent.mkdir(parents=True, exist_ok=True)
    supervision.spec_path.write_text(json.dumps(spec, indent=1, default=str) + "\n")


def read_spec(spec_path: Path) -> tuple[list[Service], Path]:
    """The services and the state file of a SPEC file that `write_spec` wrote."""
    try:
        spec = json.loads(spec_path.read_text())
        return [Service(**fields) for fields in spec["services"]], Path(spec["state"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CtlError(f"{spec_path}: not a supervisor spec written by sferumctl: {e}") from None


def start(
    supervision: Supervision,
    *,
    timeout: float,
    say: Say,
    stop_requested: Callable[[], bool] = lambda: False,
) -> None:
    """Starts the supervisor (or, if it runs, has it start at once what is down) and returns
    once every service is healthy.

    If a service exits or stays unhealthy past `timeout` seconds, a CtlError carries the log's
    last lines; a supervisor started here is then stopped, and with it every service. One that
    ran already keeps running, and keeps restarting the failed service with back-off.
    """
    pid = supervision.process.running_pid()
    if pid is not None:
        _start_down(supervision, pid, timeout=timeout, say=say, stop_requested=stop_requested)
        return
    for service in supervision.services:
        if shutil.which(service.argv[0]) is None:
            raise CtlError(
                f"{service.name}: cannot run {service.argv[0]}: not found or not executable",
                details=[service.install_hint] if service.install_hint else [],
            )
        pid = service.running_pid()
        if pid is not None:  # started by an older sferumctl: the supervisor adopts it
            say(f"{service.name}: already running (pid {pid})")
            continue
        if service.healthy():
            raise CtlError(
                f"{service.health_url} already answers, but not from this "
                f"deployment's {service.name}: is another server on that port?"
            )
        say(f"{service.name}: starting (output in {service.log_path})")
    supervision.state_path.unlink(missing_ok=True)  # a stale one would tell of exits long past
    write_spec(supervision)
    process = spawn(supervision.process)
    say(f"supervisor: started (pid {process.pid}, log in {supervision.process.log_path})")
    try:
        _wait_healthy(
            supervision, lambda: process.poll() is None, {}, timeout, say, stop_requested
        )
    except (CtlError, KeyboardInterrupt):
        _stop_supervisor(supervision, process.pid, say=say)
        raise


def _start_down(
    supervision: Supervision,
    supervisor_pid: int,
    *,
    timeout: float,
    say: Say,
    stop_requested: Callable[[], bool],
) -> None:
    """`start` while the supervisor runs: it starts at once whatever waits or was stopped."""
    running, _ = read_spec(supervision.spec_path)
    if [s.name for s in running] != [s.name for s in supervision.services]:
        say(
            f"note: the supervisor (pid {supervisor_pid}) runs "
            f"{', '.join(s.name for s in running)} as when it started; "
            "`sferumctl stop` then `start` runs the services the config names now"
        )
    supervision = attrs.evolve(supervision, services=tuple(running))
    states = _caught_up(supervision)
    exits = {name: state.exits for name, state in states.items()}
    for service in running:
        pid = service.running_pid()
        if pid is None:
            say(f"{service.name}: starting (output in {service.log_path})")
        else:
            say(f"{service.name}: already running (pid {pid})")

    def alive() -> bool:
        return supervision.process.running_pid() == supervisor_pid

    _signal(supervisor_pid, signal.SIGUSR1)
    try:
        _wait_healthy(supervision, alive, exits, timeout, say, stop_requested)
    except CtlError as e:
        raise CtlError(
            e.message,
            details=[
                *e.details,
                f"the supervisor (pid {supervisor_pid}) keeps restarting it, with back-off; "
                "`sferumctl stop` stops everything",
            ],
        ) from None


def _caught_up(supervision: Supervision, patience: float = 5.0) -> dict[str, ServiceState]:
    """The supervisor's state once it has written one (then it has its signal handlers: a
    SIGUSR1 before would end it) and has seen the exits that already happened (it polls), so
    that an exit before this `start` is not taken for a failure while starting."""
    deadline = time.monotonic() + patience
    while True:
        states = read_states(supervision.state_path)
        behind = [
            s
            for s in supervision.services
            if s.name in states and states[s.name].state == RUNNING and s.running_pid() is None
        ]
        if (states and not behind) or time.monotonic() > deadline:
            return states
        time.sleep(_POLL_SECONDS)


def spawn(service: Service) -> subprocess.Popen[bytes]:
    """Starts `service` detached, its output appended to its log, and writes its PID file."""
    service.log_path.parent.mkdir(parents=True, exist_ok=True)
    service.pid_path.parent.mkdir(parents=True, exist_ok=True)
    with service.log_path.open("ab") as log:
        stamp = SYSTEM_CLOCK.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"--- {stamp} starting: {shlex.join(service.argv)}\n".encode())
        log.flush()
        try:
            process = subprocess.Popen(
                service.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=service.cwd,
                env={**os.environ, **service.env},
                start_new_session=True,  # a Ctrl-C in the admin's terminal must not reach it
            )
        except OSError as e:  # not installed, not executable
            raise CtlError(
                f"{service.name}: cannot run {service.argv[0]}: {e.strerror}",
                details=[service.install_hint] if service.install_hint else [],
            ) from None
    service.pid_path.write_text(f"{process.pid}\n")
    return process


def _wait_healthy(
    supervision: Supervision,
    supervisor_alive: Callable[[], bool],
    exits_before: Mapping[str, int],
    timeout: float,
    say: Say,
    stop_requested: Callable[[], bool],
) -> None:
    """Until every service is healthy; a CtlError if one exits (its exit count in the state
    file passes `exits_before`), the supervisor dies, or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    pending = list(supervision.services)
    while not stop_requested():
        if not supervisor_alive():
            raise _failure(supervision.process, "stopped while the services were starting")
        states = read_states(supervision.state_path)
        for service in list(pending):
            state = states.get(service.name)
            if state is None:  # the supervisor has not written its first state yet
                continue
            if state.exits > exits_before.get(service.name, 0):
                raise _failure(service, f"{state.last_exit} while starting")
            if state.state == RUNNING and service.healthy():
                say(f"{service.name}: healthy (pid {state.pid}, {service.health_url})")
                pending.remove(service)
        if not pending:
            return
        if time.monotonic() > deadline:
            service = pending[0]
            raise _failure(service, f"did not answer {service.health_url} within {timeout:g} s")
        time.sleep(_POLL_SECONDS)


def _failure(service: Service, what: str) -> CtlError:
    """An error about `service` that shows where its log is and how the log ends."""
    try:
        with service.log_path.open(encoding="utf-8", errors="replace") as log:
            tail = [line.rstrip("\n") for line in collections.deque(log, LOG_TAIL_LINES)]
    except FileNotFoundError:
        tail = []
    return CtlError(
        f"{service.name} {what}",
        details=[f"log: {service.log_path} (last {len(tail)} lines below)", *tail],
    )


def stop(supervision: Supervision, *, say: Say) -> None:
    """Stops the supervisor, which stops the services; then any service still running without
    it (started by an older sferumctl, or left by a supervisor that was killed)."""
    pid = supervision.process.running_pid()
    left: Sequence[Service] = supervision.services
    if pid is not None:
        pids = {s.name: s.running_pid() for s in supervision.services}
        _stop_supervisor(supervision, pid, say=say)
        for service in supervision.services:
            if pids[service.name] is not None and service.running_pid() is None:
                say(f"{service.name}: stopped (pid {pids[service.name]})")
        left = [s for s in left if pids[s.name] is None or s.running_pid() is not None]
    else:
        supervision.process.pid_path.unlink(missing_ok=True)
    stop_each(left, say=say)
    supervision.state_path.unlink(missing_ok=True)
    supervision.spec_path.unlink(missing_ok=True)


def _stop_supervisor(supervision: Supervision, pid: int, *, say: Say) -> None:
    """SIGTERM to the supervisor, which stops each service in turn; SIGKILL to it if that takes
    longer than the services' grace periods, and `stop_each` then deals with what is left."""
    patience = sum(s.stop_grace + 5 for s in supervision.services) + 5
    _signal(pid, signal.SIGTERM)
    if not _gone(supervision.process, pid, patience):
        say(f"supervisor: still running after {patience:g} s, killing it")
        _signal(pid, signal.SIGKILL)
        _gone(supervision.process, pid, 5)
    supervision.process.pid_path.unlink(missing_ok=True)
    say(f"supervisor: stopped (pid {pid})")


def stop_each(services: Sequence[Service], *, say: Say) -> None:
    """SIGTERM, up to the service's `stop_grace` seconds to exit, then SIGKILL; in reverse
    start order."""
    for service in reversed(services):
        pid = service.running_pid()
        if pid is None:
            stale = service.pid_path.exists()
            service.pid_path.unlink(missing_ok=True)
            say(f"{service.name}: not running{' (removed a stale PID file)' if stale else ''}")
            continue
        _signal(pid, signal.SIGTERM)
        if not _gone(service, pid, service.stop_grace):
            say(f"{service.name}: still running after {service.stop_grace:g} s, killing it")
            _signal(pid, signal.SIGKILL)
            _gone(service, pid, 5)
        service.pid_path.unlink(missing_ok=True)
        say(f"{service.name}: stopped (pid {pid})")


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
        os.kill(pid, signum)


def _gone(service: Service, pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while service.running_pid() == pid:
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True


def status(supervision: Supervision) -> tuple[list[str], bool]:
    """One line for the supervisor and one per service, and whether all of them run and every
    service is healthy."""
    supervisor_pid = supervision.process.running_pid()
    if supervisor_pid is None:
        lines, all_ok = ["supervisor: stopped"], False
        states: dict[str, ServiceState] = {}
    else:
        lines, all_ok = [f"supervisor: running (pid {supervisor_pid})"], True
        states = read_states(supervision.state_path)
    for service in supervision.services:
        pid = service.running_pid()
        healthy = pid is not None and service.healthy()
        all_ok = all_ok and healthy
        lines.append(_status_line(service, pid, healthy, states.get(service.name)))
    return lines, all_ok


def _status_line(
    service: Service, pid: int | None, healthy: bool, state: ServiceState | None
) -> str:
    """A service's line of `status`; what the supervisor knows of it (`state`, None without a
    supervisor) adds its restarts and its last exit."""
    history = ""
    if state is not None:
        history = f"; restarts {state.restarts}"
        if state.last_exit is not None:
            history += f", last exit: {state.last_exit} at {state.last_exit_at}"
    if pid is not None:
        health = f"health {'ok' if healthy else 'failing'}: {service.health_url}"
        return f"{service.name}: running (pid {pid}, {health}{history})"
    if state is not None and state.state == WAITING and state.restart_at is None:
        return (
            f"{service.name}: waiting for {', '.join(service.requires)} to answer ({history[2:]})"
        )
    if state is not None and state.state == WAITING:
        return f"{service.name}: waiting to restart at {state.restart_at} ({history[2:]})"
    return f"{service.name}: stopped{f' ({history[2:]})' if history else ''}"


def run(supervision: Supervision, *, timeout: float, say: Say) -> None:
    """`start`, then waits for SIGINT or SIGTERM and stops everything.

    The supervisor restarts a failed service meanwhile; if the supervisor itself dies, the
    services left are stopped and a CtlError says so.
    """
    with signals_caught((signal.SIGINT, signal.SIGTERM)) as received:
        start(supervision, timeout=timeout, say=say, stop_requested=lambda: bool(received))
        try:
            if not received:
                say("running; Ctrl-C stops it")
            while not received:
                if supervision.process.running_pid() is None:
                    raise _failure(supervision.process, "stopped unexpectedly")
                time.sleep(_POLL_SECONDS)
        finally:
            stop(supervision, say=say)


@contextlib.contextmanager
def signals_caught(signums: Sequence[signal.Signals]) -> Iterator[list[int]]:
    """Records `signums` in the yielded list instead of dying, for loops that poll."""
    received: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, _frame: received.append(signum))
        for signum in signums
    }
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
