"""Process control (`start`, `stop`, `status`, `run`) on a stand-in service: a tiny HTTP server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import synapse_sferum
from synapse_sferum.ctl import services
from synapse_sferum.ctl.deployment import Deployment
from synapse_sferum.ctl.errors import CtlError
from synapse_sferum.ctl.main import main
from synapse_sferum.ctl.services import Service

# argv: MARKER MODE PORT. MODE: ok (serves /health), crash, deaf (never answers), stubborn
# (ignores SIGTERM).
FAKE_SERVICE = textwrap.dedent("""
    import http.server, signal, sys, time
    mode, port = sys.argv[2], int(sys.argv[3])
    print("fake service starting", flush=True)
    if mode == "crash":
        print("boom: cannot open the database", flush=True)
        sys.exit(3)
    if mode == "deaf":
        time.sleep(600)
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


def fake_service(folder: Path, mode: str = "ok", port: int | None = None) -> Service:
    marker = f"fake-service:{folder}"
    port = port or free_port()
    return Service(
        name="fake",
        argv=(sys.executable, "-c", FAKE_SERVICE, marker, mode, str(port)),
        identity=(marker,),
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=folder / "logs" / "fake.out",
        pid_path=folder / "run" / "fake.pid",
        cwd=folder,
    )


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def started(tmp_path: Path, lines: list[str]) -> Iterator[list[Service]]:
    """Services the test starts; whatever still runs at the end is stopped."""
    running: list[Service] = []
    yield running
    services.stop(running, say=lines.append, grace=2)


def test_start_status_stop(tmp_path: Path, started: list[Service], lines: list[str]) -> None:
    service = fake_service(tmp_path)
    started.append(service)
    services.start([service], timeout=30, say=lines.append)
    pid = service.running_pid()
    assert pid is not None and service.healthy()
    assert lines == [
        f"fake: starting (pid {pid}, output in {service.log_path})",
        f"fake: healthy ({service.health_url})",
    ]
    assert "fake service starting" in service.log_path.read_text()
    assert services.status([service]) == (
        [f"fake: running (pid {pid}, health ok: {service.health_url})"],
        True,
    )

    lines.clear()
    services.start([service], timeout=30, say=lines.append)
    assert lines == [f"fake: already running (pid {pid})"]
    assert service.running_pid() == pid

    lines.clear()
    services.stop([service], say=lines.append)
    assert lines == [f"fake: stopped (pid {pid})"]
    assert not service.pid_path.exists()
    assert services.status([service]) == (["fake: stopped"], False)
    assert not Path(f"/proc/{pid}/cmdline").exists() or not service.healthy()


def test_a_crash_while_starting_shows_the_log(tmp_path: Path, lines: list[str]) -> None:
    service = fake_service(tmp_path, "crash")
    with pytest.raises(CtlError) as raised:
        services.start([service], timeout=30, say=lines.append)
    assert raised.value.message == "fake exited with code 3 while starting"
    assert raised.value.details[0].startswith(f"log: {service.log_path} (last ")
    assert raised.value.details[-1] == "boom: cannot open the database"
    assert not service.pid_path.exists()


def test_timeout_stops_what_it_started(tmp_path: Path, lines: list[str]) -> None:
    service = fake_service(tmp_path, "deaf")
    with pytest.raises(CtlError) as raised:
        services.start([service], timeout=0.5, say=lines.append)
    assert raised.value.message == f"fake did not answer {service.health_url} within 0.5 s"
    assert lines[-1].startswith("fake: stopped (pid ")
    assert service.running_pid() is None and not service.pid_path.exists()


def test_log_tail_is_the_last_lines(tmp_path: Path, lines: list[str]) -> None:
    service = fake_service(tmp_path, "crash")
    service.log_path.parent.mkdir()
    service.log_path.write_text("".join(f"old line {n}\n" for n in range(50)))
    with pytest.raises(CtlError) as raised:
        services.start([service], timeout=30, say=lines.append)
    tail = raised.value.details[1:]
    assert len(tail) == services.LOG_TAIL_LINES
    assert tail[-1] == "boom: cannot open the database"


def test_stubborn_service_is_killed_after_the_grace_period(
    tmp_path: Path, started: list[Service], lines: list[str]
) -> None:
    service = fake_service(tmp_path, "stubborn")
    started.append(service)
    services.start([service], timeout=30, say=lines.append)
    lines.clear()
    services.stop([service], say=lines.append, grace=0.5)
    assert lines[0] == "fake: still running after 0.5 s, killing it"
    assert lines[1].startswith("fake: stopped")
    assert service.running_pid() is None


def test_a_stranger_with_the_recorded_pid_is_never_signalled(
    tmp_path: Path, lines: list[str]
) -> None:
    service = fake_service(tmp_path)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        service.pid_path.parent.mkdir()
        service.pid_path.write_text(f"{stranger.pid}\n")
        assert service.running_pid() is None
        assert services.status([service]) == (["fake: stopped"], False)
        services.stop([service], say=lines.append)
        assert lines == ["fake: not running (removed a stale PID file)"]
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
    tmp_path: Path, started: list[Service], lines: list[str]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    port = free_port()
    other = fake_service(tmp_path / "a", port=port)
    started.append(other)
    services.start([other], timeout=30, say=lines.append)
    ours = fake_service(tmp_path / "b", port=port)
    with pytest.raises(CtlError) as raised:
        services.start([ours], timeout=30, say=lines.append)
    assert "already answers, but not from this deployment's fake" in raised.value.message
    assert ours.running_pid() is None


RUN_DRIVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from synapse_sferum.ctl import services
    from tests.unit.test_ctl_services import fake_service

    from synapse_sferum.ctl.errors import CtlError

    service = fake_service(Path(sys.argv[1]), port=int(sys.argv[2]))
    try:
        services.run([service], timeout=30, say=lambda line: print(line, flush=True))
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
    output = [driver.stdout.readline() for _ in range(3)]
    assert output[2] == "running; Ctrl-C stops it\n", output
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
    assert rest.splitlines()[-2].startswith("fake: stopped (pid ")
    assert rest.splitlines()[-1] == "run returned"
    assert not fake_service(tmp_path).pid_path.exists()


def test_run_ends_when_a_service_dies(tmp_path: Path) -> None:
    driver = start_run_driver(tmp_path)
    try:
        service = fake_service(tmp_path)
        pid = service.running_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        rest, _ = driver.communicate(timeout=30)
    finally:
        driver.kill()
    assert driver.returncode == 1
    assert rest.splitlines()[-1] == "fake stopped unexpectedly"
    assert not service.pid_path.exists()


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
    assert capsys.readouterr().out == "synapse: stopped\n"
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
