"""`sferumctl init --workers N`: the topology (a pure plan), and the files rendered from it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from synapse_sferum.ctl.checkconfig import check_config
from synapse_sferum.ctl.deployment import Deployment, local_base_url
from synapse_sferum.ctl.errors import CtlError
from synapse_sferum.ctl.main import main
from synapse_sferum.ctl.services import deployment_services, on_host
from synapse_sferum.ctl.workers import (
    FEDERATION_PORT_REST,
    ROUTES,
    Endpoint,
    Topology,
    federation_port_routes,
    plan,
)
from tests.unit.test_ctl_init import _self_signed

SERVER = "school1.example.org"
DATABASE = "postgresql://synapse:secret@127.0.0.1:5432/synapse"
PROXY = Endpoint("127.0.0.1", 8008)


def topology(**given: Any) -> Topology:
    args: dict[str, Any] = {
        "workers": 2,
        "worker_hosts": (),
        "main_host": "127.0.0.1",
        "proxy": PROXY,
        "first_port": 9000,
        "database_host": "127.0.0.1",
    }
    return plan(**{**args, **given})


def layout(t: Topology) -> list[tuple[str, str, str, int, tuple[str, ...]]]:
    return [(p.name, p.role, p.host, p.port, p.listeners[0].resources) for p in t.processes]


def test_one_host_two_client_workers() -> None:
    t = topology()
    assert layout(t) == [
        ("main", "main", "127.0.0.1", 9000, ("client", "federation")),
        ("client-1", "client", "127.0.0.1", 9003, ("client",)),
        ("client-2", "client", "127.0.0.1", 9004, ("client",)),
        ("federation-reader", "federation_reader", "127.0.0.1", 9005, ("federation",)),
        ("event-persister", "event_persister", "127.0.0.1", 9006, ("replication",)),
        ("federation-sender", "federation_sender", "127.0.0.1", 9007, ("health",)),
        ("pusher", "pusher", "127.0.0.1", 9008, ("health",)),
        ("background", "background", "127.0.0.1", 9009, ("client",)),
        ("media", "media", "127.0.0.1", 9010, ("media",)),
    ]
    assert t.main.port_of("replication") == 9001
    assert t.redis == Endpoint("127.0.0.1", 9002)
    assert t.instance_map == {
        "main": Endpoint("127.0.0.1", 9001),
        "event-persister": Endpoint("127.0.0.1", 9006),
    }
    upstreams = t.upstreams()
    assert upstreams["sync"] == upstreams["client"] == ("127.0.0.1:9003", "127.0.0.1:9004")
    assert upstreams["module"] == ("127.0.0.1:9009",)
    assert upstreams["main"] == ("127.0.0.1:9000",)


@pytest.mark.parametrize(
    ("workers", "hosts", "main_host", "expected"),
    [
        # The workers take the hosts in turn; main (and Redis) stay on the main host.
        (
            1,
            ("127.0.0.2", "127.0.0.3"),
            "127.0.0.1",
            ["127.0.0.1", *["127.0.0.2", "127.0.0.3"] * 3, "127.0.0.2"],
        ),
        (
            3,
            ("10.0.0.2",),
            "10.0.0.1",
            ["10.0.0.1"] + ["10.0.0.2"] * 9,
        ),
        (1, ("::1",), "::1", ["::1"] * 8),
    ],
)
def test_workers_take_the_hosts_in_turn(
    workers: int, hosts: tuple[str, ...], main_host: str, expected: list[str]
) -> None:
    t = topology(workers=workers, worker_hosts=hosts, main_host=main_host, database_host="db")
    assert [p.host for p in t.processes] == expected
    assert t.redis.host == main_host
    ports = [p.port for p in t.processes]
    assert len(set(ports)) == len(ports)  # unique, so several hosts never clash either


def test_ipv6_addresses_are_bracketed_where_nginx_and_urls_need_it() -> None:
    t = topology(worker_hosts=("::1",), main_host="::1")
    assert t.main.address == "[::1]:9000"
    assert t.redis.address == "[::1]:9002"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"database_host": None}, "--workers needs PostgreSQL"),
        ({"workers": 0}, "--workers must be at least 1"),
        (
            {"worker_hosts": ("10.0.0.2",)},
            "workers on other hosts cannot reach main and Redis at 127.0.0.1; give --bind",
        ),
        (
            {"worker_hosts": ("10.0.0.2",), "main_host": "10.0.0.1"},
            "cannot reach PostgreSQL at 127.0.0.1; give --database",
        ),
        (
            {"worker_hosts": ("10.0.0.2",), "main_host": "10.0.0.1", "database_host": "localhost"},
            "cannot reach PostgreSQL at localhost",
        ),
        ({"first_port": 65530}, "the last port, 65548, is past 65535"),
        ({"first_port": 8000}, "ports 8000-8018 would take --http-port (8008)"),
    ],
)
def test_plans_that_cannot_work_are_refused(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        topology(**given)


def _upstream(path: str) -> str:
    """Where nginx sends `path`: its first matching regex location, else `location /`."""
    return next((up for pattern, up in ROUTES if re.search(pattern, path)), "main")


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/_matrix/client/v3/sync", "sync"),
        ("/_matrix/client/r0/sync", "sync"),
        ("/_matrix/client/v3/rooms/!a:s/initialSync", "sync"),
        ("/_matrix/client/v3/rooms/!a:s/send/m.room.message/t1", "room"),
        ("/_matrix/client/v3/rooms/!a:s/messages", "room"),
        ("/_matrix/client/v3/rooms/!a:s/state/m.room.name/", "room"),
        ("/_matrix/client/v3/rooms/!a:s/join", "room"),
        ("/_matrix/client/v3/rooms/!a:s/state", "client"),
        ("/_matrix/client/v3/rooms/!a:s/joined_members", "client"),
        ("/_matrix/client/v3/login", "client"),
        ("/_matrix/client/v3/register", "client"),
        ("/_matrix/client/v3/createRoom", "client"),
        ("/_matrix/client/v3/user_directory/search", "client"),
        ("/_matrix/client/v3/directory/room/%23class-5a:s", "client"),
        ("/_matrix/client/v3/keys/upload", "client"),
        ("/_matrix/client/versions", "client"),
        ("/.well-known/matrix/client", "client"),
        ("/.well-known/matrix/support", "client"),
        ("/_matrix/media/v3/upload", "media"),
        ("/_matrix/client/v1/media/download/s/abc", "media"),
        ("/_matrix/federation/v1/media/download/abc", "media"),
        ("/_synapse/admin/v1/media/s/abc", "media"),
        ("/_matrix/federation/v1/send/123", "federation"),
        ("/_matrix/federation/v2/send_join/!a:s/$e", "federation"),
        ("/_matrix/key/v2/query", "federation"),
        ("/_synapse/client/sferum/admin/v1/reconcile", "module"),
        ("/_synapse/client/sferum/join", "module"),
        # The streams main writes, Synapse's admin API (workers serve little of it), the rest.
        ("/_matrix/client/v3/rooms/!a:s/typing/@u:s", "main"),
        ("/_matrix/client/v3/sendToDevice/m.x/t1", "main"),
        ("/_matrix/client/v3/user/@u:s/account_data/m.direct", "main"),
        ("/_matrix/client/v3/rooms/!a:s/receipt/m.read/$e", "main"),
        ("/_matrix/client/v3/presence/@u:s/status", "main"),
        ("/_matrix/client/v3/pushrules/", "main"),
        ("/_synapse/admin/v1/register", "main"),
        ("/_matrix/key/v2/server", "main"),
        ("/_matrix/client/v3/logout", "main"),
    ],
)
def test_requests_go_to_the_process_that_serves_them(path: str, upstream: str) -> None:
    assert _upstream(path) == upstream


def test_every_route_names_an_upstream() -> None:
    assert {up for _, up in ROUTES} <= set(topology().upstreams())


def _on_federation_port(path: str) -> str | None:
    """Where nginx's TLS federation port sends `path`: its first matching route, then main for
    the rest of its paths; None for nginx's 404."""
    routes = federation_port_routes()
    routed = next((up for pattern, up in routes if re.search(pattern, path)), None)
    if routed is None and re.search(FEDERATION_PORT_REST, path):
        return "main"
    return routed


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/_matrix/federation/v1/send/123", "federation"),
        ("/_matrix/federation/v2/invite/!a:s/$e", "federation"),
        ("/_matrix/federation/v1/make_join/!a:s/@u:s", "federation"),
        ("/_matrix/key/v2/query", "federation"),
        ("/_matrix/key/v2/server", "main"),
        ("/_matrix/federation/v1/openid/userinfo", "main"),
        ("/_matrix/federation/v1/media/download/abc", "media"),
        ("/_matrix/media/v3/download/s/abc", "media"),
        ("/_synapse/client/sferum/join", "module"),
        ("/.well-known/matrix/server", "client"),
        # main's federation listener has no client resource: no client or admin API here
        ("/_matrix/client/versions", None),
        ("/_matrix/client/v3/login", None),
        ("/_matrix/client/v3/sync", None),
        ("/_matrix/client/v1/media/download/s/abc", None),
        ("/_synapse/admin/v1/register", None),
        ("/_synapse/admin/v1/media/s/abc", None),
        ("/_synapse/client/password_reset/email/submit_token", None),
        ("/.well-knownXmatrix/server", None),
    ],
)
def test_federation_port_serves_what_mains_federation_listener_serves(
    path: str, upstream: str | None
) -> None:
    assert _on_federation_port(path) == upstream


def test_federation_port_routes_keep_the_client_ports_order() -> None:
    routes = federation_port_routes()
    assert [r for r in ROUTES if r in routes] == list(routes)


# -- rendered files -----------------------------------------------------------------------------


def init(tmp_path: Path, *args: str) -> Deployment:
    folder = tmp_path / "d"
    assert main(["init", str(folder), "--server-name", SERVER, *args]) == 0
    return Deployment(folder)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


WORKERS = (
    "--database", DATABASE, "--workers", "2", "--internal-port", "9000", "--metrics-port", "8999"
)  # fmt: skip


def test_shared_config_moves_each_duty_to_its_worker(tmp_path: Path) -> None:
    d = init(tmp_path, *WORKERS)
    config = load(d.homeserver_config)
    secrets = d.load_secrets()
    assert config["redis"] == {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 9002,
        "password": secrets["redis_password"],
    }
    assert config["instance_map"] == {
        "main": {"host": "127.0.0.1", "port": 9001},
        "event-persister": {"host": "127.0.0.1", "port": 9006},
    }
    assert config["stream_writers"] == {"events": ["event-persister"]}
    assert config["run_background_tasks_on"] == "background"
    assert config["federation_sender_instances"] == ["federation-sender"]
    assert config["pusher_instances"] == ["pusher"]
    assert config["enable_media_repo"] is False
    assert config["media_instance_running_background_jobs"] == "media"
    assert config["worker_replication_secret"] == secrets["worker_replication_secret"]
    # Main listens behind nginx, which has the public port; its metrics on --metrics-port.
    assert [
        (lst["port"], lst["type"], [n for r in lst.get("resources", []) for n in r["names"]])
        for lst in config["listeners"]
    ] == [
        (9000, "http", ["client", "federation"]),
        (9001, "http", ["replication"]),
        (8999, "metrics", []),
    ]
    assert f"requirepass {secrets['redis_password']}" in d.redis_config.read_text()
    # sferumctl reaches the admin API through nginx.
    assert local_base_url(d, d.load_config()) == "http://127.0.0.1:8008"


def test_each_worker_has_its_file_and_log(tmp_path: Path) -> None:
    d = init(tmp_path, *WORKERS, "--worker-hosts", "127.0.0.2,127.0.0.3")
    names = sorted(p.stem for p in d.workers_dir.glob("*.yaml"))
    assert names == [
        "background",
        "client-1",
        "client-2",
        "event-persister",
        "federation-reader",
        "federation-sender",
        "media",
        "pusher",
    ]
    client = load(d.worker_config("client-1"))
    assert client["worker_app"] == "synapse.app.generic_worker"
    assert client["worker_name"] == "client-1"
    listener, metrics = client["worker_listeners"]
    assert (listener["port"], listener["bind_addresses"]) == (9003, ["127.0.0.2"])
    assert listener["resources"] == [{"names": ["client"], "compress": False}]
    # Each worker's metrics: on its host, from the ports after the last worker's listener.
    assert metrics == {"type": "metrics", "port": 9011, "bind_addresses": ["127.0.0.2"]}
    assert load(d.worker_config("media"))["enable_media_repo"] is True
    assert "enable_media_repo" not in load(d.worker_config("background"))
    log = load(Path(client["worker_log_config"]))
    assert log["handlers"]["file"]["filename"] == str(d.logs / "client-1.log")


def test_prometheus_scrapes_main_and_every_worker_on_its_host(tmp_path: Path) -> None:
    d = init(tmp_path, *WORKERS, "--worker-hosts", "127.0.0.2,127.0.0.3")
    [synapse] = [
        job
        for job in load(d.root / "prometheus.yml")["scrape_configs"]
        if job["job_name"] == "synapse"
    ]
    targets = {c["labels"]["process"]: c["targets"] for c in synapse["static_configs"]}
    assert targets["synapse"] == ["127.0.0.1:8999"]
    assert targets["synapse-client-1"] == ["127.0.0.2:9011"]
    assert targets["synapse-client-2"] == ["127.0.0.3:9012"]
    assert len(targets) == 1 + 8  # main and every worker


def test_check_config_loads_main_and_every_worker_with_synapse(tmp_path: Path) -> None:
    d = init(tmp_path, *WORKERS)
    check_config(d)
    pusher = d.worker_config("pusher")
    config = load(pusher)
    config["worker_listeners"][0]["resources"] = [{"names": ["nonsense"]}]
    pusher.write_text(yaml.safe_dump(config))
    with pytest.raises(CtlError, match=f"^{re.escape(str(pusher))}: (.|\\n)*nonsense"):
        check_config(d)


def _nginx_accepts(d: Deployment) -> None:
    d.logs.mkdir(exist_ok=True)
    checked = subprocess.run(
        ["nginx", "-t", "-e", str(d.logs / "nginx-error.log"), "-c", str(d.nginx_config)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_its_config(tmp_path: Path) -> None:
    d = init(tmp_path, *WORKERS)
    _nginx_accepts(d)
    text = d.nginx_config.read_text()
    assert "listen 127.0.0.1:8008;" in text
    assert "hash $sferum_user consistent;" in text
    # nginx writes its PID and temporary files in the deployment, nowhere else.
    assert str(d.run / "nginx.master.pid") in text


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_takes_the_federation_port_with_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, SERVER)
    tls = ("--federation-port", "8448", "--tls-cert", str(cert), "--tls-key", str(key))
    d = init(tmp_path, *WORKERS, *tls)
    _nginx_accepts(d)
    assert "listen 127.0.0.1:8448 ssl;" in d.nginx_config.read_text()
    # Main's own listeners are behind nginx: no TLS listener of its own.
    assert [lst["port"] for lst in load(d.homeserver_config)["listeners"]] == [9000, 9001, 8999]


def test_start_runs_every_process_main_first(tmp_path: Path) -> None:
    """Main needs Redis, every worker needs main (its database schema): the supervisor starts
    a service only once what it `requires` answers."""
    d = init(tmp_path, *WORKERS)
    found = deployment_services(d, d.load_config())
    main_ = ("synapse",)
    assert [(s.name, s.requires, s.health_url) for s in found] == [
        ("redis", (), "redis:127.0.0.1:9002"),
        ("synapse", ("redis",), "http://127.0.0.1:9000/health"),
        ("synapse-background", main_, "http://127.0.0.1:9009/health"),
        ("synapse-client-1", main_, "http://127.0.0.1:9003/health"),
        ("synapse-client-2", main_, "http://127.0.0.1:9004/health"),
        ("synapse-event-persister", main_, "http://127.0.0.1:9006/health"),
        ("synapse-federation-reader", main_, "http://127.0.0.1:9005/health"),
        ("synapse-federation-sender", main_, "http://127.0.0.1:9007/health"),
        ("synapse-media", main_, "http://127.0.0.1:9010/health"),
        ("synapse-pusher", main_, "http://127.0.0.1:9008/health"),
        ("nginx", (), "http://127.0.0.1:8008/_sferum/proxy-health"),
    ]
    worker = found[3]
    assert worker.argv[-2:] == ("-c", str(d.worker_config("client-1")))
    assert worker.identity == ("synapse.app.generic_worker", str(d.worker_config("client-1")))


def test_back_to_one_process_removes_the_workers_files(tmp_path: Path) -> None:
    d = init(tmp_path, *WORKERS)
    init(tmp_path, "--workers", "0")
    assert not d.nginx_config.exists() and not d.redis_config.exists()
    assert list(d.workers_dir.glob("*")) == []
    assert "redis" not in load(d.homeserver_config)
    assert [s.name for s in deployment_services(d, d.load_config())] == ["synapse"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2"], "--workers needs PostgreSQL"),
        (["--worker-hosts", "127.0.0.2"], "only used with --workers N"),
        (
            [
                *("--database", DATABASE, "--workers", "1", "--diary-source", "push"),
                "--internal-port",
                "8009",
            ],
            "ports 8009-8025 would take --diary-port (8009)",
        ),
    ],
)
def test_worker_parameters_that_clash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["init", str(tmp_path / "d"), "--server-name", SERVER, *args]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "33"], "argument --workers: must be a number of workers from 0 to 32"),
        (["--worker-hosts", "10.0.0.2,box"], "argument --worker-hosts: must be an IP address"),
        (["--worker-hosts", "0.0.0.0"], "argument --worker-hosts: 0.0.0.0 is no host's address"),
    ],
)
def test_bad_worker_arguments_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit):
        main(["init", str(tmp_path / "d"), "--server-name", SERVER, *args])
    assert message in capsys.readouterr().err


def test_each_host_starts_its_own_processes(tmp_path: Path) -> None:
    d = init(tmp_path, *WORKERS, "--worker-hosts", "127.0.0.2,127.0.0.3")
    found = deployment_services(d, d.load_config())
    assert [s.name for s in on_host(found, "127.0.0.1")] == ["redis", "synapse", "nginx"]
    assert [s.name for s in on_host(found, "127.0.0.3")] == [
        "synapse-client-2",
        "synapse-event-persister",
        "synapse-media",
        "synapse-pusher",
    ]
    assert on_host(found, None) == found
    with pytest.raises(CtlError, match=r"no process runs on 10\.0\.0\.9; the hosts are: 127"):
        on_host(found, "10.0.0.9")
