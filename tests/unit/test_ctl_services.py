"""Process control (`start`, `stop`, `status`, `run`) on a stand-in service: a tiny HTTP server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

import synapse_sferum
from synapse_sferum.ctl import services
from synapse_sferum.ctl.deployment import Deployment
from synapse_sferum.ctl.errors import CtlError
from synapse_sferum.ctl.main import main
from synapse_sferum.ctl.services import Service, Supervision
from synapse_sferum.ctl.supervision import RUNNING, STOPPED, WAITING, ServiceState

# argv: MARKER MODE PORT. MODE: ok (serves /health), slow (serves it after a second), crash,
# deaf (never answers), stubborn (ignores SIGTERM).
FAKE_SERVICE = textwrap.dedent("""
    import http.server, signal, sys, time
    mode, port = sys.argv[2], int(sys.argv[3])
    print("fake service starting", flush=True)
    if mode == "crash":
        print("boom: cannot open the database", flush=True)
        sys.exit(3)
    if mode == "deaf":
        time.sleep(600)
    if mode == "slow":
        time.sleep(1)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
""")

REPO_ROOT = Path(synapse_sferum.__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fake_service(
    folder: Path,
    mode: str = "ok",
    port: int | None = None,
    stop_grace: float = 5,
    name: str = "fake",
    requires: tuple[str, ...] = (),
) -> Service:
    marker = f"fake-service:{folder}:{name}"
    port = port or free_port()
    return Service(
        name=name,
        argv=(sys.executable, "-c", FAKE_SERVICE, marker, mode, str(port)),
        identity=(marker,),
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=folder / "logs" / f"{name}.out",
        pid_path=folder / "run" / f"{name}.pid",
        cwd=folder,
        stop_grace=stop_grace,
        requires=requires,
    )


def supervised(*watched: Service) -> Supervision:
    folder = watched[0].cwd
    return services.supervised(watched, folder / "run", folder / "logs", folder)


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def started(lines: list[str]) -> Iterator[list[Supervision]]:
    """Supervisions the test starts; whatever still runs at the end is stopped."""
    running: list[Supervision] = []
    yield running
    for supervision in running:
        services.stop(supervision, say=lines.append)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def test_start_status_stop(tmp_path: Path, started: list[Supervision], lines: list[str]) -> None:
    service = fake_service(tmp_path)
    supervision = supervised(service)
    started.append(supervision)
    services.start(supervision, timeout=30, say=lines.append)
    pid, supervisor_pid = service.running_pid(), supervision.process.running_pid()
    assert pid is not None and supervisor_pid is not None and service.healthy()
    assert lines == [
        f"fake: starting (output in {service.log_path})",
        f"supervisor: started (pid {supervisor_pid}, log in {tmp_path / 'logs/supervisor.out'})",
        f"fake: healthy (pid {pid}, {service.health_url})",
    ]
    assert "fake service starting" in service.log_path.read_text()
    assert f"fake: started (pid {pid})" in supervision.process.log_path.read_text()
    assert services.status(supervision) == (
        [
            f"supervisor: running (pid {supervisor_pid})",
            f"fake: running (pid {pid}, health ok: {service.health_url}; restarts 0)",
        ],
        True,
    )

    lines.clear()
    services.start(supervision, timeout=30, say=lines.append)
    assert lines == [
        f"fake: already running (pid {pid})",
        f"fake: healthy (pid {pid}, {service.health_url})",
    ]
    assert service.running_pid() == pid

    lines.clear()
    services.stop(supervision, say=lines.append)
    assert lines == [f"supervisor: stopped (pid {supervisor_pid})", f"fake: stopped (pid {pid})"]
    assert not service.pid_path.exists() and not supervision.process.pid_path.exists()
    assert not supervision.state_path.exists() and not supervision.spec_path.exists()
    assert services.status(supervision) == (["supervisor: stopped", "fake: stopped"], False)
    assert not Path(f"/proc/{pid}/cmdline").exists() or not service.healthy()


def test_a_service_killed_9_is_restarted_and_status_tells(
    tmp_path: Path, started: list[Supervision], lines: list[str]
) -> None:
    service = fake_service(tmp_path)
    supervision = supervised(service)
    started.append(supervision)
    services.start(supervision, timeout=30, say=lines.append)
    pid = service.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: service.running_pid() not in (None, pid) and service.healthy(), "a restart")
    new_pid = service.running_pid()
    [_, line] = services.status(supervision)[0]
    assert line.startswith(
        f"fake: running (pid {new_pid}, health ok: {service.health_url}; restarts 1, "
        "last exit: was killed by SIGKILL at "
    ), line
    log = supervision.process.log_path.read_text()
    assert f"fake (pid {pid}) was killed by SIGKILL after " in log
    assert f"fake: started (pid {new_pid}, restart 1)" in log


def test_a_service_stopped_with_sigterm_stays_stopped_until_start(
    tmp_path: Path, started: list[Supervision], lines: list[str]
) -> None:
    """As systemd's Restart=on-failure: SIGTERM is an admin's stop, not a failure."""
    service = fake_service(tmp_path)
    supervision = supervised(service)
    started.append(supervision)
    services.start(supervision, timeout=30, say=lines.append)
    pid = service.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    stopped = "fake: stopped (restarts 0, last exit: was killed by SIGTERM at "
    wait_for(lambda: services.status(supervision)[0][1].startswith(stopped), "a stop")
    assert "stopped on purpose, not restarted" in supervision.process.log_path.read_text()

    lines.clear()
    services.start(supervision, timeout=30, say=lines.append)
    assert lines[0] == f"fake: starting (output in {service.log_path})"
    assert service.running_pid() not in (None, pid) and service.healthy()


def test_start_just_after_a_kill_is_no_failure(
    tmp_path: Path, started: list[Supervision], lines: list[str]
) -> None:
    """The supervisor notices an exit within its poll; `start` waits for that before it counts
    exits, so the kill before it is not taken for a crash while starting."""
    service = fake_service(tmp_path)
    supervision = supervised(service)
    started.append(supervision)
    services.start(supervision, timeout=30, say=lines.append)
    pid = service.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: service.running_pid() is None, "the exit")
    lines.clear()
    services.start(supervision, timeout=30, say=lines.append)
    assert lines[0] == f"fake: starting (output in {service.log_path})"
    assert service.running_pid() not in (None, pid) and service.healthy()


def test_a_service_starts_once_those_it_requires_answer(
    tmp_path: Path, started: list[Supervision], lines: list[str]
) -> None:
    """As Synapse's workers wait for the main process, which prepares the database."""
    base = fake_service(tmp_path, "slow", name="base")
    worker = fake_service(tmp_path, name="worker", requires=("base",))
    supervision = supervised(base, worker)
    started.append(supervision)
    services.start(supervision, timeout=30, say=lines.append)
    assert base.healthy() and worker.healthy()
    log = [line.split(" ", 2)[2] for line in supervision.process.log_path.read_text().splitlines()
           if not line.startswith("---")]  # fmt: skip
    base_pid, worker_pid = base.running_pid(), worker.running_pid()
    assert log == [
        f"base: started (pid {base_pid})",
        "worker: waits for base",
        f"worker: started (pid {worker_pid})",
    ]


def test_a_crash_while_starting_shows_the_log(tmp_path: Path, lines: list[str]) -> None:
    service = fake_service(tmp_path, "crash")
    supervision = supervised(service)
    with pytest.raises(CtlError) as raised:
        services.start(supervision, timeout=30, say=lines.append)
    assert raised.value.message == "fake exited with code 3 while starting"
    assert raised.value.details[0].startswith(f"log: {service.log_path} (last ")
    assert raised.value.details[-1] == "boom: cannot open the database"
    assert lines[-1].startswith("supervisor: stopped (pid ")
    assert not service.pid_path.exists() and supervision.process.running_pid() is None


def test_timeout_stops_what_it_started(tmp_path: Path, lines: list[str]) -> None:
    service = fake_service(tmp_path, "deaf")
    supervision = supervised(service)
    with pytest.raises(CtlError) as raised:
        services.start(supervision, timeout=0.5, say=lines.append)
    assert raised.value.message == f"fake did not answer {service.health_url} within 0.5 s"
    assert lines[-1].startswith("supervisor: stopped (pid ")
    assert service.running_pid() is None and not service.pid_path.exists()
    assert supervision.process.running_pid() is None


def test_log_tail_is_the_last_lines(tmp_path: Path, lines: list[str]) -> None:
    service = fake_service(tmp_path, "crash")
    service.log_path.parent.mkdir()
    service.log_path.write_text("".join(f"old line {n}\n" for n in range(50)))
    with pytest.raises(CtlError) as raised:
        services.start(supervised(service), timeout=30, say=lines.append)
    tail = raised.value.details[1:]
    assert len(tail) == services.LOG_TAIL_LINES
    assert tail[-1] == "boom: cannot open the database"


def test_stubborn_service_is_killed_after_its_grace_period(
    tmp_path: Path, started: list[Supervision], lines: list[str]
) -> None:
    service = fake_service(tmp_path, "stubborn", stop_grace=0.5)
    supervision = supervised(service)
    started.append(supervision)
    services.start(supervision, timeout=30, say=lines.append)
    lines.clear()
    services.stop(supervision, say=lines.append)
    assert lines[0].startswith("supervisor: stopped (pid ")
    assert lines[1].startswith("fake: stopped (pid ")
    assert "fake: still running after 0.5 s, killing it" in (
        supervision.process.log_path.read_text()
    )
    assert service.running_pid() is None


def test_stop_cleans_up_after_a_killed_supervisor_and_an_older_layout(
    tmp_path: Path, started: list[Supervision], lines: list[str]
) -> None:
    """Services run by PID file alone (a supervisor killed -9, or an older sferumctl that had
    none) are adopted by `start`, restarted when they end, and stopped by `stop`."""
    service = fake_service(tmp_path)
    supervision = supervised(service)
    started.append(supervision)
    services.spawn(service)  # as an older sferumctl started it: no supervisor
    wait_for(service.healthy, "the service's health")
    pid = service.running_pid()
    services.start(supervision, timeout=30, say=lines.append)
    assert lines[0] == f"fake: already running (pid {pid})"
    supervisor_pid = supervision.process.running_pid()
    assert supervisor_pid is not None
    assert f"fake: adopted (pid {pid})" in supervision.process.log_path.read_text()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: service.running_pid() not in (None, pid), "a restart")
    pid = service.running_pid()
    assert "exited, how is unknown (adopted, not our child) after " in (
        supervision.process.log_path.read_text()
    )

    os.kill(supervisor_pid, signal.SIGKILL)
    wait_for(lambda: supervision.process.running_pid() is None, "the supervisor's end")
    assert services.status(supervision)[0][0] == "supervisor: stopped"
    lines.clear()
    services.stop(supervision, say=lines.append)
    assert lines == [f"fake: stopped (pid {pid})"]
    assert service.running_pid() is None and not supervision.process.pid_path.exists()


def test_a_stranger_with_the_recorded_pid_is_never_signalled(
    tmp_path: Path, lines: list[str]
) -> None:
    service = fake_service(tmp_path)
    supervision = supervised(service)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        service.pid_path.parent.mkdir()
        for pid_path in (service.pid_path, supervision.process.pid_path):
            pid_path.write_text(f"{stranger.pid}\n")
        assert service.running_pid() is None and supervision.process.running_pid() is None
        assert services.status(supervision) == (["supervisor: stopped", "fake: stopped"], False)
        services.stop(supervision, say=lines.append)
        assert lines == ["fake: not running (removed a stale PID file)"]
        assert not supervision.process.pid_path.exists()
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_garbage_pid_file_counts_as_stopped(tmp_path: Path) -> None:
    service = fake_service(tmp_path)
    service.pid_path.parent.mkdir()
    service.pid_path.write_text("not a pid\n")
    assert service.running_pid() is None


def test_refuses_to_start_when_another_server_has_the_port(
    tmp_path: Path, started: list[Supervision], lines: list[str]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    port = free_port()
    other = supervised(fake_service(tmp_path / "a", port=port))
    started.append(other)
    services.start(other, timeout=30, say=lines.append)
    ours = supervised(fake_service(tmp_path / "b", port=port))
    with pytest.raises(CtlError) as raised:
        services.start(ours, timeout=30, say=lines.append)
    assert "already answers, but not from this deployment's fake" in raised.value.message
    assert ours.process.running_pid() is None


def test_a_missing_program_is_named_with_its_hint(tmp_path: Path, lines: list[str]) -> None:
    service = attrs.evolve(
        fake_service(tmp_path), argv=("no-such-turnserver",), install_hint="apt-get install it"
    )
    with pytest.raises(CtlError) as raised:
        services.start(supervised(service), timeout=30, say=lines.append)
    assert raised.value.message == (
        "fake: cannot run no-such-turnserver: not found or not executable"
    )
    assert raised.value.details == ("apt-get install it",)


def test_the_spec_gives_back_the_services(tmp_path: Path) -> None:
    service = attrs.evolve(
        fake_service(tmp_path), env={"A": "b"}, after=("synapse",), requires=("redis",)
    )
    supervision = supervised(service)
    services.write_spec(supervision)
    assert services.read_spec(supervision.spec_path) == ([service], supervision.state_path)


KILLED = {"last_exit": "was killed by SIGKILL", "last_exit_at": "2026-12-01T10:00:00+03:00"}


@pytest.mark.parametrize(
    ("pid", "healthy", "state", "line"),
    [
        (None, False, None, "w: stopped"),
        (7, True, None, "w: running (pid 7, health ok: http://h/health)"),
        (7, False, ServiceState(RUNNING, pid=7),
         "w: running (pid 7, health failing: http://h/health; restarts 0)"),
        (8, True, ServiceState(RUNNING, pid=8, restarts=1, exits=1, **KILLED),
         "w: running (pid 8, health ok: http://h/health; restarts 1, last exit: was killed by "
         "SIGKILL at 2026-12-01T10:00:00+03:00)"),
        (None, False, ServiceState(WAITING, restarts=2, exits=3, **KILLED,
                                   restart_at="2026-12-01T10:00:04+03:00"),
         "w: waiting to restart at 2026-12-01T10:00:04+03:00 (restarts 2, last exit: was killed "
         "by SIGKILL at 2026-12-01T10:00:00+03:00)"),
        (None, False, ServiceState(WAITING), "w: waiting for base to answer (restarts 0)"),
        (None, False, ServiceState(STOPPED, exits=1, last_exit="exited with code 0",
                                   last_exit_at="2026-12-01T10:00:00+03:00"),
         "w: stopped (restarts 0, last exit: exited with code 0 at 2026-12-01T10:00:00+03:00)"),
    ],
)  # fmt: skip
def test_status_lines(
    pid: int | None, healthy: bool, state: ServiceState | None, line: str
) -> None:
    service = attrs.evolve(
        fake_service(Path("/x")), name="w", health_url="http://h/health", requires=("base",)
    )
    assert services._status_line(service, pid, healthy, state) == line


RUN_DRIVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from synapse_sferum.ctl import services
    from tests.unit.test_ctl_services import fake_service, supervised

    from synapse_sferum.ctl.errors import CtlError

    service = fake_service(Path(sys.argv[1]), port=int(sys.argv[2]))
    try:
        services.run(supervised(service), timeout=30, say=lambda line: print(line, flush=True))
    except CtlError as e:
        print(e.message, flush=True)
        sys.exit(1)
    print("run returned", flush=True)
""")


def start_run_driver(folder: Path) -> subprocess.Popen[str]:
    """`services.run` of a fake service in a child process, once it says it is running."""
    driver = subprocess.Popen(
        [sys.executable, "-c", RUN_DRIVER, str(folder), str(free_port())],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert driver.stdout is not None
    output = [driver.stdout.readline() for _ in range(4)]
    assert output[3] == "running; Ctrl-C stops it\n", output
    return driver


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_stops_everything_on_a_signal(tmp_path: Path, signum: signal.Signals) -> None:
    driver = start_run_driver(tmp_path)
    try:
        driver.send_signal(signum)
        rest, _ = driver.communicate(timeout=30)
    finally:
        driver.kill()
    assert driver.returncode == 0
    assert rest.splitlines()[-3].startswith("supervisor: stopped (pid ")
    assert rest.splitlines()[-2].startswith("fake: stopped (pid ")
    assert rest.splitlines()[-1] == "run returned"
    assert not fake_service(tmp_path).pid_path.exists()


def test_run_ends_when_the_supervisor_dies(tmp_path: Path) -> None:
    driver = start_run_driver(tmp_path)
    try:
        supervision = supervised(fake_service(tmp_path))
        pid = supervision.process.running_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        rest, _ = driver.communicate(timeout=30)
    finally:
        driver.kill()
    assert driver.returncode == 1
    assert rest.splitlines()[-2].startswith("fake: stopped (pid ")  # left running, then stopped
    assert rest.splitlines()[-1] == "supervisor stopped unexpectedly"
    assert not supervision.services[0].pid_path.exists()


def test_deployment_runs_synapse_with_conf_d_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    assert main(["init", str(folder), "--server-name", "localhost", "--http-port", "18559"]) == 0
    for name in ("20-b.yaml", "10-a.yaml", "notes.txt"):
        (folder / "conf.d" / name).write_text("{}\n")
    deployment = Deployment(folder)
    [synapse] = services.deployment_services(deployment, deployment.load_config())
    assert synapse.argv == (
        sys.executable,
        "-m",
        "synapse.app.homeserver",
        "-c",
        str(folder / "homeserver.yaml"),
        "-c",
        str(folder / "conf.d" / "10-a.yaml"),
        "-c",
        str(folder / "conf.d" / "20-b.yaml"),
    )
    assert synapse.health_url == "http://127.0.0.1:18559/health"
    assert (synapse.log_path, synapse.pid_path) == (
        folder / "logs" / "synapse.out",
        folder / "run" / "synapse.pid",
    )
    assert set(synapse.identity) == {"synapse.app.homeserver", str(folder / "homeserver.yaml")}
    assert synapse.env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO_ROOT)


def test_status_and_stop_of_a_stopped_deployment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "d"
    assert main(["init", str(folder), "--server-name", "localhost"]) == 0
    capsys.readouterr()
    assert main(["status", str(folder)]) == 3
    assert capsys.readouterr().out == "supervisor: stopped\nsynapse: stopped\n"
    # A broken config must not keep anyone from stopping the server.
    (folder / "conf.d" / "broken.yaml").write_text("listeners: [\n")
    assert main(["stop", str(folder)]) == 0
    assert capsys.readouterr().out == "synapse: not running\n"


@pytest.mark.parametrize("timeout", ["0", "-1", "soon", "nan", "100000"])
def test_bad_timeouts(timeout: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["start", "DIR", "--timeout", timeout])
    assert raised.value.code == 2
    assert "argument --timeout: must be a number of seconds" in capsys.readouterr().err
