"""The supervisor on a real deployment (SQLite, Synapse and the SFU, no roster): a service killed
with -9 comes back by itself, `sferumctl status` says it was restarted and how it ended, and
`sferumctl stop` leaves no process behind."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from synapse_sferum.ctl.services import sfu_health_url
from tests.integration.harness import Deployment, free_port, sferumctl

pytestmark = pytest.mark.integration

SERVER = "supervised.test"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(
        tmp_path_factory.mktemp("supervise") / SERVER,
        SERVER,
        extra_init=("--sfu-port", str(free_port())),
    )
    deployment.init()
    sferumctl("start", str(deployment.dir))
    try:
        yield deployment
    finally:
        if (deployment.dir / "run" / "supervisor.pid").exists():  # a test failed before `stop`
            deployment.stop()


def pid_of(deployment: Deployment, name: str) -> int:
    return int((deployment.dir / "run" / f"{name}.pid").read_text())


def alive(pid: int) -> bool:
    """Running: not gone, and not a zombie waiting for a parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_synapse_and_the_sfu_killed_9_come_back(deployment: Deployment) -> None:
    health = {
        "synapse": f"{deployment.base_url}/health",
        "sfu": sfu_health_url(deployment.dir / "sfu.yaml"),
    }
    killed = {name: pid_of(deployment, name) for name in health}
    for pid in killed.values():
        os.kill(pid, signal.SIGKILL)
    pids = {}
    deadline = time.monotonic() + 60
    while len(pids) < len(health):
        assert time.monotonic() < deadline, deployment.log_tail()
        time.sleep(0.2)
        for name, url in health.items():
            try:
                pid = pid_of(deployment, name)
            except (OSError, ValueError):  # between the exit and the restart: no PID file
                continue
            assert url is not None
            if pid != killed[name] and alive(pid) and answers(url):
                pids[name] = pid

    status = sferumctl("status", str(deployment.dir), check=False)
    assert status.returncode == 0, status.stdout
    lines = status.stdout.splitlines()
    log = (deployment.dir / "logs" / "supervisor.out").read_text()
    for name, url in health.items():
        [line] = [line for line in lines if line.startswith(f"{name}: ")]
        assert line.startswith(
            f"{name}: running (pid {pids[name]}, health ok: {url}; restarts 1, "
            "last exit: was killed by SIGKILL at "
        ), line
        assert f"{name} (pid {killed[name]}) was killed by SIGKILL after " in log


def test_stop_leaves_no_process(deployment: Deployment) -> None:
    pids = {name: pid_of(deployment, name) for name in ("supervisor", "synapse", "sfu")}
    out = sferumctl("stop", str(deployment.dir)).stdout.splitlines()
    assert out == [
        f"supervisor: stopped (pid {pids['supervisor']})",
        f"synapse: stopped (pid {pids['synapse']})",
        f"sfu: stopped (pid {pids['sfu']})",
    ]
    assert [name for name, pid in pids.items() if alive(pid)] == []
    assert list((deployment.dir / "run").iterdir()) == []
