"""Real processes for integration tests: a throwaway PostgreSQL cluster and sferumctl deployments.

Everything binds to 127.0.0.1 on ports chosen at run time and is stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sfu.config import SfuConfig
from sfu.config import parse_config as parse_sfu_config
from synapse_sferum.ctl import services
from synapse_sferum.ctl.demo import DemoCalendar
from synapse_sferum.ctl.deployment import Deployment as DeploymentFolder
from tests.demo import DIARY, ROSTER, demo_folder, today

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REPO = Path(__file__).resolve().parents[2]


def demo_roster_folder() -> Path:
    """The demo roster, dated for today: the real Synapse under test reads the real clock."""
    return demo_folder(ROSTER, today())


def demo_diary_folder() -> Path:
    """The demo's diary export (roster and gradebook), dated for today."""
    return demo_folder(DIARY, today())


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; its default elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1, *, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive TCP ports free on `host` right now.

    Chosen at random below the kernel's ephemeral range: a port the kernel hands out (`bind(0)`)
    can be taken by any outgoing connection between this check and the server's own bind, which
    happened to an SFU edge in CI (`address already in use`).
    """
    low, _ = _ephemeral_range()
    first, last = 10000, low - count
    for _ in range(1000):
        start = random.randint(first, last)
        if all(_bindable(host, start + k) for k in range(count)):
            return start
    raise RuntimeError(f"no {count} consecutive free ports on {host} in {first}..{low}")


def free_port() -> int:
    return free_ports(1)


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: drop to the postgres user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


class PostgresCluster:
    """A throwaway cluster in its own folder: postgres cannot enter pytest's (root-only) ones."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sferum-pg-"))
        self.port = free_port()

    def start(self) -> None:
        self.dir.chmod(0o755)
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(self.dir, pg.pw_uid, pg.pw_gid)
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.dir / "data"),
                    "--locale=C",
                    "-E",
                    "UTF8",
                    "-U",
                    "postgres",
                    "--auth=trust",
                ]
            ),
            check=True,
            capture_output=True,
        )
        self._pg_ctl_start()

    def _pg_ctl_start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c jit=off"
        )
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self.dir / "data"),
                    "-l",
                    str(self.dir / "pg.log"),
                    "-w",
                    "start",
                    "-o",
                    options,
                ]
            ),
            check=True,
            capture_output=True,
        )

    def restart(self) -> None:
        """Stops the server as an admin's restart does (`-m fast`: every session is cut off,
        open transactions roll back) and starts it again on the same port."""
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop"]
            ),
            check=True,
            capture_output=True,
        )
        self._pg_ctl_start()

    def create_database(self, name: str) -> str:
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-q",
                "-c",
                f"CREATE DATABASE {name}",
            ],
            check=True,
            capture_output=True,
        )
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        pid_file = self.dir / "data" / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            subprocess.run(
                _as_postgres(
                    [
                        str(PG_BIN / "pg_ctl"),
                        "-D",
                        str(self.dir / "data"),
                        "-m",
                        "immediate",
                        "stop",
                    ]
                ),
                capture_output=True,
            )
            _wait_gone(pid)
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM by PID, then SIGKILL if it lingers; always reaps it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def sferumctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "synapse_sferum.ctl", *args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"sferumctl {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


TEST_OVERRIDES = {
    "rc_message": {"per_second": 1000, "burst_count": 1000},
    "rc_registration": {"per_second": 1000, "burst_count": 1000},
    "rc_login": {
        "address": {"per_second": 1000, "burst_count": 1000},
        "account": {"per_second": 1000, "burst_count": 1000},
        "failed_attempts": {"per_second": 1000, "burst_count": 1000},
    },
    # Joins and invites keep the deployment's limits: the platform must cope with them.
    "rc_room_creation": {"per_second": 1000, "burst_count": 1000},
    "rc_3pid_validation": {"per_second": 1000, "burst_count": 1000},
    # Synapse's start-up background updates back to back instead of one a second.
    "background_updates": {"sleep_enabled": False},
}


class Deployment:
    """A deployment folder made by `sferumctl init`, started and stopped by `sferumctl`."""

    def __init__(
        self,
        root: Path,
        server_name: str,
        database: str = "sqlite",
        extra_init: tuple[str, ...] = (),
        overrides: Mapping[str, Any] = TEST_OVERRIDES,
    ):
        self.dir = root
        self.server_name = server_name
        self.port = free_port()
        self.metrics_port = free_port()  # Synapse's metrics listener (prometheus.yml)
        self.database = database
        self.extra_init = extra_init
        self.overrides = overrides
        self.base_url = f"http://127.0.0.1:{self.port}"

    def init(self) -> None:
        sferumctl(
            "init",
            str(self.dir),
            "--server-name",
            self.server_name,
            "--http-port",
            str(self.port),
            "--metrics-port",
            str(self.metrics_port),
            "--database",
            self.database,
            *self.extra_init,
        )
        (self.dir / "conf.d" / "50-tests.yaml").write_text(yaml.safe_dump(dict(self.overrides)))

    def override_module(self, name: str, section: str, values: Mapping[str, Any]) -> None:
        """Changes keys of one section of the module's config (a conf.d file after `init`)."""
        config = yaml.safe_load((self.dir / "homeserver.yaml").read_text())
        modules = config["modules"]
        modules[0]["config"].setdefault(section, {}).update(values)
        (self.dir / "conf.d" / f"{name}.yaml").write_text(yaml.safe_dump({"modules": modules}))

    def start(self) -> None:
        sferumctl("start", str(self.dir))
        self.wait_user_directory_built()

    def start_without_module(self) -> None:
        """Starts the deployment's processes with `modules: []`: the benches' baseline, stock
        Synapse with everything else alike. Not `sferumctl start`, whose check-config rightly
        refuses a server without the module."""
        (self.dir / "conf.d" / "60-no-modules.yaml").write_text(yaml.safe_dump({"modules": []}))
        folder = DeploymentFolder(self.dir)
        found = services.deployment_supervision(folder, folder.load_config())
        services.start(found, timeout=services.DEFAULT_START_TIMEOUT, say=lambda line: None)

    def wait_user_directory_built(self, timeout: float = 60) -> None:
        """Waits for Synapse's initial user directory build on a fresh database.

        Its first step empties the directory and refills it from a list of users taken earlier,
        so an account registered in between would vanish from directory search until its
        profile changes. Issuing accounts only after the build keeps search deterministic.
        """
        sql = (
            "SELECT count(*) FROM background_updates"
            " WHERE update_name LIKE 'populate_user_directory%'"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            [(pending,)] = self.sql(sql)
            if pending == 0:
                return
            time.sleep(0.2)
        raise AssertionError("Synapse's user directory build did not finish")

    def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        """Runs one statement (`?` placeholders) on the server's database, as time or an
        operator would change it; returns the rows it gives (none for a change)."""
        if self.database == "sqlite":
            with sqlite3.connect(self.dir / "homeserver.db") as db:
                return db.execute(statement, args).fetchall()
        import psycopg2

        db = psycopg2.connect(self.database)
        try:
            with db, db.cursor() as cursor:  # one transaction, committed at the end
                cursor.execute(statement.replace("%", "%%").replace("?", "%s"), args)
                return cursor.fetchall() if cursor.description else []
        finally:
            db.close()

    def stop(self) -> None:
        sferumctl("stop", str(self.dir), check=False)

    def pid(self, service: str) -> int:
        """The PID of a service that `sferumctl start` runs (`synapse`, `diary-bridge`, ...)."""
        return int((self.dir / "run" / f"{service}.pid").read_text().strip())

    @property
    def secrets(self) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load((self.dir / "secrets.yaml").read_text())
        return loaded

    def admin(self, path: str, body: Any, timeout: float = 120) -> Any:
        request = urllib.request.Request(
            f"{self.base_url}/_synapse/client/sferum/admin/v1/{path}",
            data=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.secrets['admin_api_secret']}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def reconcile(self, timeout: float = 600) -> dict[str, int]:
        """Starts a run (the API answers at once) and waits for its report; `timeout` only
        guards against a hang (a first reconcile provisions every room of the roster, which
        takes minutes on a loaded machine)."""
        deadline = time.monotonic() + timeout
        status = self.admin("reconcile", {})
        while status["state"] != "finished":
            if time.monotonic() > deadline:
                raise AssertionError(f"the reconcile did not finish in {timeout} s: {status}")
            time.sleep(0.1)
            status = self.admin("reconcile-status", {"run": status["run"]})
        report: dict[str, int] = status["reconcile"]
        return report

    def issue(self, *person_ids: str) -> dict[str, dict[str, Any]]:
        out = sferumctl(
            "accounts", "issue", str(self.dir), "--person", *person_ids, "--format", "json"
        )
        return {a["person"]: a for a in json.loads(out.stdout)}

    def register_unlinked(self, localpart: str, password: str, *, admin: bool = False) -> str:
        """A plain Synapse account with no roster person, through the shared-secret admin API
        (a server admin with `admin`: what an operator has, not a school role)."""
        import hashlib
        import hmac

        url = f"{self.base_url}/_synapse/admin/v1/register"
        with urllib.request.urlopen(url, timeout=30) as response:
            nonce = json.loads(response.read())["nonce"]
        secret = self.secrets["registration_shared_secret"].encode()
        mac = hmac.new(secret, digestmod=hashlib.sha1)
        kind = b"admin" if admin else b"notadmin"
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(), kind]))
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            user_id: str = json.loads(response.read())["user_id"]
        return user_id

    def sfu_config(self) -> SfuConfig:
        """The config `init --sfu-port` wrote for the SFU that `start` runs."""
        return parse_sfu_config(yaml.safe_load((self.dir / "sfu.yaml").read_text()))

    def synapse_log(self, process: str = "main") -> str:
        """A Synapse process's log: homeserver.log for main, NAME.log for a worker."""
        name = "homeserver" if process == "main" else process
        return (self.dir / "logs" / f"{name}.log").read_text(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        logs = sorted((self.dir / "logs").glob("*")) if (self.dir / "logs").exists() else []
        out = []
        for log in logs:
            out.append(
                f"== {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            )
        return "\n".join(out)


def copy_roster(dest: Path, source: Path | None = None) -> Path:
    shutil.copytree(source or demo_roster_folder(), dest)
    return dest


TOO_YOUNG = "p-5a-9"  # in `roster_with_a_four_year_old` only


def roster_with_a_four_year_old(dest: Path) -> Path:
    """The demo roster plus a pupil who turned 4 this year, too young for an account."""
    roster = copy_roster(dest)
    with (roster / "users.csv").open("a", encoding="utf-8") as users:
        users.write(f"{TOO_YOUNG},,,true,school-1,student,malysh.ivan,,Иван,Малыш,,,,,,,00,\n")
    with (roster / "demographics.csv").open("a", encoding="utf-8") as demographics:
        born = DemoCalendar(today()).born(4, 6, 1)
        demographics.write(f"{TOO_YOUNG},,,{born},male,,,,,,,,RU,,Зеленоград,\n")
    return roster


def get_json(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        return {"status": e.code, **json.loads(e.read() or b"{}")}
