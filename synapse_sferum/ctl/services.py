"""The processes of a deployment: start them in the background, check their health, stop them.

Each service is one `Service` record; the diary bridge, the SFU and coturn join Synapse as more
records in `deployment_services`. A PID file alone is never trusted: after a reboot its number
may belong to a stranger, so a PID counts as ours only while /proc/PID/cmdline (Linux) still
shows the service's identifying arguments.
"""

from __future__ import annotations

import collections
import contextlib
import os
import secrets
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from synapse_sferum.ctl.workers import GENERIC_APP

Say = Callable[[str], None]

DEFAULT_START_TIMEOUT = 60.0
STOP_GRACE_SECONDS = 20.0
LOG_TAIL_LINES = 20
_POLL_SECONDS = 0.25


@attrs.frozen
class Service:
    name: str
    argv: tuple[str, ...]
    # Arguments that only this service's process has: they identify it in /proc/PID/cmdline.
    identity: tuple[str, ...]
    # http://HOST:PORT/PATH (healthy on a 200), or stun:HOST:PORT for a STUN/TURN server
    # (healthy when it answers a STUN binding request over UDP). None when the config is
    # unreadable: then never healthy.
    health_url: str | None
    log_path: Path
    pid_path: Path
    cwd: Path
    env: Mapping[str, str] = attrs.field(factory=dict)
    # Said when argv[0] cannot be run, e.g. a system package that is not installed.
    install_hint: str | None = None
    # `start_in_stages` starts a stage once the earlier ones are healthy: Synapse's workers
    # refuse a database whose schema main has not prepared yet.
    stage: int = 0
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
        stage=1,
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
    # Synapse must load the synapse_sferum this sferumctl belongs to, installed or not.
    package_root = str(Path(synapse_sferum.__file__).resolve().parents[1])
    python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)

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
                stage=1,
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


def start(
    services: Sequence[Service],
    *,
    timeout: float,
    say: Say,
    stop_requested: Callable[[], bool] = lambda: False,
) -> None:
    """Starts the services that are not running and returns once all of them are healthy.

    If one exits or stays unhealthy past `timeout` seconds, the ones started here are stopped and
    a CtlError carries the log's last lines.
    """
    started: list[tuple[Service, subprocess.Popen[bytes]]] = []
    try:
        for service in services:
            pid = service.running_pid()
            if pid is not None:
                say(f"{service.name}: already running (pid {pid})")
                continue
            if service.healthy():
                raise CtlError(
                    f"{service.health_url} already answers, but not from this "
                    f"deployment's {service.name}: is another server on that port?"
                )
            process = _spawn(service)
            started.append((service, process))
            say(f"{service.name}: starting (pid {process.pid}, output in {service.log_path})")
        _wait_healthy(started, timeout, say, stop_requested)
    except (CtlError, KeyboardInterrupt):
        # Undo this call's starts; a process that already exited leaves only its PID file.
        for service, process in reversed(started):
            if process.poll() is None:
                stop([service], say=say)
            else:
                service.pid_path.unlink(missing_ok=True)
        raise


def start_in_stages(services: Sequence[Service], *, timeout: float, say: Say) -> None:
    """`start`, one stage after another; if a stage fails, the earlier stages' processes
    started by this call are stopped too."""
    before = {s.name for s in services if s.running_pid() is not None}
    done: list[Service] = []
    for stage in sorted({s.stage for s in services}):
        group = [s for s in services if s.stage == stage]
        try:
            start(group, timeout=timeout, say=say)
        except (CtlError, KeyboardInterrupt):
            stop([s for s in done if s.name not in before], say=say)
            raise
        done += group


def _spawn(service: Service) -> subprocess.Popen[bytes]:
    service.log_path.parent.mkdir(parents=True, exist_ok=True)
    service.pid_path.parent.mkdir(parents=True, exist_ok=True)
    with service.log_path.open("ab") as log:
        stamp = SYSTEM_CLOCK.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"--- {stamp} sferumctl start: {shlex.join(service.argv)}\n".encode())
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
    started: list[tuple[Service, subprocess.Popen[bytes]]],
    timeout: float,
    say: Say,
    stop_requested: Callable[[], bool],
) -> None:
    deadline = time.monotonic() + timeout
    pending = list(started)
    while not stop_requested():
        for service, process in list(pending):
            if process.poll() is not None:
                raise _failure(service, f"exited with code {process.returncode} while starting")
            if service.healthy():
                say(f"{service.name}: healthy ({service.health_url})")
                pending.remove((service, process))
        if not pending:
            return
        if time.monotonic() > deadline:
            service = pending[0][0]
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


def stop(services: Sequence[Service], *, say: Say, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM, up to `grace` seconds to exit, then SIGKILL; in reverse start order."""
    for service in reversed(services):
        pid = service.running_pid()
        if pid is None:
            stale = service.pid_path.exists()
            service.pid_path.unlink(missing_ok=True)
            say(f"{service.name}: not running{' (removed a stale PID file)' if stale else ''}")
            continue
        _signal(pid, signal.SIGTERM)
        if not _gone(service, pid, grace):
            say(f"{service.name}: still running after {grace:g} s, killing it")
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


def status(services: Sequence[Service]) -> tuple[list[str], bool]:
    """One line per service, and whether all of them run and are healthy."""
    lines, all_ok = [], True
    for service in services:
        pid = service.running_pid()
        healthy = pid is not None and service.healthy()
        all_ok = all_ok and healthy
        if pid is None:
            lines.append(f"{service.name}: stopped")
        else:
            lines.append(
                f"{service.name}: running (pid {pid}, health "
                f"{'ok' if healthy else 'failing'}: {service.health_url})"
            )
    return lines, all_ok


def run(services: Sequence[Service], *, timeout: float, say: Say) -> None:
    """Starts the services, waits for SIGINT or SIGTERM, then stops them all.

    If a service exits on its own meanwhile, the others are stopped too and a CtlError says which.
    """
    with _signals_caught() as received:
        start(services, timeout=timeout, say=say, stop_requested=lambda: bool(received))
        try:
            if not received:
                say("running; Ctrl-C stops it")
            while not received:
                dead = [s for s in services if s.running_pid() is None]
                if dead:
                    raise _failure(dead[0], "stopped unexpectedly")
                time.sleep(_POLL_SECONDS)
        finally:
            stop(services, say=say)


@contextlib.contextmanager
def _signals_caught() -> Iterator[list[int]]:
    """Records SIGINT and SIGTERM in the yielded list instead of dying, for loops that poll."""
    received: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, _frame: received.append(signum))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
