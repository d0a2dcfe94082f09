"""`sferumctl init`: the rendered deployment, re-runs that keep what is stored, bad parameters."""

from __future__ import annotations

import datetime
import re
import stat
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sfu.config import parse_config as parse_sfu_config
from synapse_sferum.config import parse_config
from synapse_sferum.ctl import params
from synapse_sferum.ctl.checkconfig import check_config
from synapse_sferum.ctl.deployment import SECRET_NAMES, Deployment, client_base_url
from synapse_sferum.ctl.main import main
from synapse_sferum.ctl.services import deployment_services

SERVER = "school1.example.org"


def init(tmp_path: Path, *args: str) -> Path:
    folder = tmp_path / "d"
    assert main(["init", str(folder), *args]) == 0
    return folder


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def module_config(folder: Path) -> dict[str, Any]:
    [entry] = load(folder / "homeserver.yaml")["modules"]
    assert entry["module"] == "synapse_sferum.SferumModule"
    config: dict[str, Any] = entry["config"]
    return config


def test_new_deployment_is_closed_and_accepted_by_synapse_and_the_module(tmp_path: Path) -> None:
    folder = init(tmp_path, "--server-name", SERVER, "--http-port", "18555")
    config = load(folder / "homeserver.yaml")
    closed = {
        "server_name": SERVER,
        "public_baseurl": "http://127.0.0.1:18555/",
        "report_stats": False,
        # Registration only with a linking code and a phone checked through the module.
        "enable_registration": True,
        "registration_requires_token": True,
        "registrations_require_3pid": ["msisdn"],
        "allow_guest_access": False,
        "federation_domain_whitelist": [SERVER],
        "trusted_key_servers": [],
        "allow_public_rooms_without_auth": False,
        "allow_public_rooms_over_federation": False,
        "require_auth_for_profile_requests": True,
        "limit_profile_requests_to_users_who_share_rooms": True,
        "include_profile_data_on_invite": False,
        "enable_set_displayname": False,
        "enable_set_avatar_url": True,
        "max_avatar_size": "5M",
        "allowed_avatar_mimetypes": ["image/png", "image/jpeg", "image/webp", "image/gif"],
        "enable_3pid_changes": False,
        "user_directory": {"enabled": True, "search_all_users": True},
        "default_room_version": "11",
        "encryption_enabled_by_default_for_room_type": "off",
        "presence": {"enabled": True},
        "app_service_config_files": [str(folder / "appservice-sferum.yaml")],
        "database": {"name": "sqlite3", "args": {"database": str(folder / "homeserver.db")}},
        "signing_key_path": str(folder / f"{SERVER}.signing.key"),
    }
    assert {key: config.get(key) for key in closed} == closed
    listener, metrics = config["listeners"]
    # Prometheus metrics on a listener of their own, on loopback only.
    assert config["enable_metrics"] is True
    assert metrics == {"port": 9000, "bind_addresses": ["127.0.0.1"], "type": "metrics"}
    assert listener["bind_addresses"] == ["127.0.0.1"]
    assert listener["resources"][0]["names"] == ["client", "federation"]
    assert client_base_url(config) == "http://127.0.0.1:18555"

    parsed = parse_config(module_config(folder))
    assert parsed.partner_servers == frozenset()
    check_config(Deployment(folder))  # Synapse's own loader, and the app service file


def test_files_secrets_key_and_modes(tmp_path: Path) -> None:
    folder = init(tmp_path, "--server-name", SERVER)
    stored = load(folder / "secrets.yaml")
    assert set(stored) == set(SECRET_NAMES)
    assert len(set(stored.values())) == len(SECRET_NAMES)
    config = load(folder / "homeserver.yaml")
    assert config["registration_shared_secret"] == stored["registration_shared_secret"]
    assert config["macaroon_secret_key"] == stored["macaroon_secret_key"]
    assert config["form_secret"] == stored["form_secret"]
    assert module_config(folder)["admin_api_secret"] == stored["admin_api_secret"]

    appservice = load(folder / "appservice-sferum.yaml")
    assert (appservice["as_token"], appservice["hs_token"]) == (
        stored["as_token"],
        stored["hs_token"],
    )
    assert appservice["url"] is None and appservice["rate_limited"] is False
    [users] = appservice["namespaces"]["users"]
    assert users["exclusive"] is True
    assert re.match(users["regex"], f"@sferum:{SERVER}")
    assert not re.match(users["regex"], "@sferum:school1Xexample.org")
    assert not re.match(users["regex"], f"@sferumx:{SERVER}")

    key = (folder / f"{SERVER}.signing.key").read_text().split()
    assert key[0] == "ed25519" and re.fullmatch(r"a_[A-Za-z]{4}", key[1])

    for private in (
        "secrets.yaml",
        "homeserver.yaml",
        "appservice-sferum.yaml",
        f"{SERVER}.signing.key",
        "sferum-init.yaml",
    ):
        assert stat.S_IMODE((folder / private).stat().st_mode) == 0o600, private
    for sub in ("conf.d", "media_store", "logs", "run"):
        assert (folder / sub).is_dir()
    assert list((folder / "conf.d").iterdir()) == []
    assert load(folder / "log.config")["handlers"]["file"]["filename"] == str(
        folder / "logs" / "homeserver.log"
    )


def test_rerun_keeps_secrets_key_database_and_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = init(
        tmp_path,
        "--server-name",
        SERVER,
        "--http-port",
        "18556",
        "--federate-with",
        "school2.example.org",
    )
    (folder / "homeserver.db").write_bytes(b"data")
    (folder / "media_store" / "photo").write_bytes(b"jpeg")
    before = {
        name: (folder / name).read_bytes()
        for name in ("secrets.yaml", f"{SERVER}.signing.key", "homeserver.yaml", "homeserver.db")
    }
    capsys.readouterr()

    assert main(["init", str(folder)]) == 0
    out = capsys.readouterr().out
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert (folder / "media_store" / "photo").read_bytes() == b"jpeg"
    for line in (
        "kept      secrets.yaml",
        f"kept      {SERVER}.signing.key",
        "kept      homeserver.db",
        "unchanged homeserver.yaml",
    ):
        assert line in out
    assert not list(folder.glob("*.bak"))

    # New parameters re-render; the others are remembered.
    assert main(["init", str(folder), "--http-port", "18557"]) == 0
    config = load(folder / "homeserver.yaml")
    assert config["listeners"][0]["port"] == 18557
    assert config["public_baseurl"] == "http://127.0.0.1:18557/"
    assert config["federation_domain_whitelist"] == [SERVER, "school2.example.org"]
    assert (folder / "secrets.yaml").read_bytes() == before["secrets.yaml"]


def test_rerun_keeps_a_hand_edited_config_as_backup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = init(tmp_path, "--server-name", SERVER)
    edited = (folder / "homeserver.yaml").read_text() + "# my note\n"
    (folder / "homeserver.yaml").write_text(edited)
    capsys.readouterr()

    assert main(["init", str(folder)]) == 0
    [backup] = folder.glob("homeserver.yaml.*.bak")
    assert backup.read_text() == edited
    assert "# my note" not in (folder / "homeserver.yaml").read_text()
    assert f"updated   homeserver.yaml (previous copy: {backup.name})" in capsys.readouterr().out


def test_missing_secret_is_added_and_the_others_kept(tmp_path: Path) -> None:
    folder = init(tmp_path, "--server-name", SERVER)
    stored = load(folder / "secrets.yaml")
    del stored["form_secret"]
    (folder / "secrets.yaml").write_text(yaml.safe_dump(stored))

    assert main(["init", str(folder)]) == 0
    again = load(folder / "secrets.yaml")
    assert {k: v for k, v in again.items() if k != "form_secret"} == stored
    assert (
        again["form_secret"]
        and load(folder / "homeserver.yaml")["form_secret"] == (again["form_secret"])
    )


def test_server_name_change_refused_once_there_is_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = init(tmp_path, "--server-name", SERVER)
    (folder / "homeserver.db").write_bytes(b"data")
    files = {p: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    capsys.readouterr()

    assert main(["init", str(folder), "--server-name", "other.example.org"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"init: {folder} already serves '{SERVER}'")
    assert "cannot rename a server" in err
    assert {p: p.read_bytes() for p in folder.iterdir() if p.is_file()} == files


def test_server_name_change_before_first_start(tmp_path: Path) -> None:
    folder = init(tmp_path, "--server-name", SERVER)
    assert main(["init", str(folder), "--server-name", "other.example.org"]) == 0
    assert load(folder / "homeserver.yaml")["server_name"] == "other.example.org"
    assert (folder / "other.example.org.signing.key").exists()
    assert (folder / f"{SERVER}.signing.key").exists()  # nothing is deleted


def test_postgresql(tmp_path: Path) -> None:
    folder = init(
        tmp_path,
        "--server-name",
        SERVER,
        "--database",
        "postgresql://synapse_user:p%40ss%3Aword@db.internal:6432/synapse",
    )
    assert load(folder / "homeserver.yaml")["database"] == {
        "name": "psycopg2",
        "args": {
            "user": "synapse_user",
            "password": "p@ss:word",
            "dbname": "synapse",
            "host": "db.internal",
            "port": 6432,
            "cp_min": 1,
            "cp_max": 10,
        },
    }
    check_config(Deployment(folder))
    # The password is stored, so the file that remembers parameters is private too.
    assert stat.S_IMODE((folder / "sferum-init.yaml").stat().st_mode) == 0o600


def test_a_postgresql_deployment_cannot_be_renamed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = init(tmp_path, "--server-name", SERVER, "--database", "postgresql://u:p@h/db")
    assert main(["init", str(folder), "--server-name", "other.example.org"]) == 1
    assert "its PostgreSQL database" in capsys.readouterr().err


def _self_signed(tmp_path: Path, host: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_federation_listener_and_partners(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, SERVER)
    folder = init(
        tmp_path,
        "--server-name",
        SERVER,
        "--bind",
        "127.0.0.2",
        "--federate-with",
        "school2.example.org",
        "school3.example.org:8448",
        "--federate-with",
        SERVER,
        "--federation-port",
        "18448",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    )
    config = load(folder / "homeserver.yaml")
    client, federation, _metrics = config["listeners"]
    assert client["resources"][0]["names"] == ["client", "openid"]  # openid: the mini-app
    assert (federation["port"], federation["tls"], federation["resources"][0]["names"]) == (
        18448,
        True,
        ["federation"],
    )
    assert federation["bind_addresses"] == ["127.0.0.2"]
    assert (config["tls_certificate_path"], config["tls_private_key_path"]) == (
        str(cert),
        str(key),
    )
    assert config["federation_domain_whitelist"] == [
        SERVER,
        "school2.example.org",
        "school3.example.org:8448",
    ]
    assert module_config(folder)["partner_servers"] == [
        "school2.example.org",
        "school3.example.org:8448",
    ]
    check_config(Deployment(folder))

    # --federate-with alone: no partners any more.
    assert main(["init", str(folder), "--federate-with"]) == 0
    assert load(folder / "homeserver.yaml")["federation_domain_whitelist"] == [SERVER]


def test_ipv6_bind(tmp_path: Path) -> None:
    folder = init(tmp_path, "--server-name", SERVER, "--bind", "::1", "--http-port", "18558")
    config = load(folder / "homeserver.yaml")
    assert config["public_baseurl"] == "http://[::1]:18558/"
    assert client_base_url(config) == "http://[::1]:18558"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--http-port", "99999"], "argument --http-port: must be a TCP port from 1 to 65535"),
        (["--http-port", "http"], "argument --http-port: must be a TCP port"),
        (["--bind", "localhost"], "argument --bind: must be an IP address"),
        (["--server-name", "bad name"], "argument --server-name: not a valid Matrix server"),
        (["--federate-with", "ok.example", "no/slash"], "argument --federate-with: not a valid"),
        (
            ["--database", "mysql://u:p@h/db"],
            "argument --database: expected 'sqlite' or postgresql://",
        ),
        (["--database", "postgresql://h/db"], "argument --database: expected"),
        (["--public-baseurl", "ftp://x/"], "argument --public-baseurl: must be an http(s) URL"),
        (["--tls-cert", "/nonexistent.pem"], "argument --tls-cert: no such file"),
        (["--sfu-public-url", "ftp://x"], "argument --sfu-public-url: must be an http(s) URL"),
        (["--sfu-edges", "17"], "argument --sfu-edges: must be a number of processes from 0"),
        (["--support-email", "admin"], "argument --support-email: needs exactly one @"),
        (["--support-email", "admin@localhost"], "argument --support-email: needs a domain"),
        (["--support-email", "it desk@school.test"], "argument --support-email: has spaces"),
        (["--support-page", "school.test/help"], "argument --support-page: must be an http(s)"),
    ],
)
def test_bad_arguments_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["init", str(tmp_path / "d"), "--server-name", SERVER, *args])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "init: --server-name is required for a new deployment"),
        (
            ["--server-name", SERVER, "--federation-port", "8448"],
            "--federation-port needs --tls-cert and --tls-key",
        ),
        (
            ["--server-name", SERVER, "--tls-cert", __file__, "--tls-key", __file__],
            "only used with --federation-port",
        ),
        (
            [
                "--server-name",
                SERVER,
                "--federation-port",
                "8008",
                "--tls-cert",
                __file__,
                "--tls-key",
                __file__,
            ],
            "--federation-port must differ from --http-port (8008)",
        ),
        (
            ["--server-name", SERVER, "--bind", "0.0.0.0"],
            "--public-baseurl is required with --bind 0.0.0.0",
        ),
    ],
)
def test_parameters_that_clash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["init", str(tmp_path / "d"), *args]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("sferum-init.yaml", "http_port: 0\n", "sferum-init.yaml: http_port: must be a TCP port"),
        ("sferum-init.yaml", "colour: red\n", "sferum-init.yaml: colour: unknown key"),
        ("sferum-init.yaml", "- a list\n", "sferum-init.yaml: must be a YAML mapping"),
        ("sferum-init.yaml", "server_name: [\n", "sferum-init.yaml: not valid YAML"),
        ("secrets.yaml", "form_secret: 3\n", "secrets.yaml: form_secret: must be a non-empty"),
        ("secrets.yaml", "pin: '1234'\n", "secrets.yaml: pin: unknown secret"),
    ],
)
def test_bad_stored_files_are_named_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], file: str, content: str, message: str
) -> None:
    folder = init(tmp_path, "--server-name", SERVER)
    (folder / file).write_text(content)
    files = {p: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    capsys.readouterr()

    assert main(["init", str(folder)]) == 1
    assert message in capsys.readouterr().err
    assert {p: p.read_bytes() for p in folder.iterdir() if p.is_file()} == files


def test_a_file_in_the_way(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "d").write_text("")
    assert main(["init", str(tmp_path / "d"), "--server-name", SERVER]) == 1
    assert "exists and is not a folder" in capsys.readouterr().err


def test_sfu_is_announced_with_delayed_events(tmp_path: Path) -> None:
    plain = init(tmp_path / "plain", "--server-name", SERVER, "--http-port", "18560")
    config = load(plain / "homeserver.yaml")
    assert "extra_well_known_client_content" not in config
    assert "max_event_delay_duration" not in config
    assert "matrix_rtc" not in config and "experimental_features" not in config
    assert "calls" not in module_config(plain)  # no SFU: no call widgets
    assert not (plain / "sfu.yaml").exists()

    folder = init(tmp_path, "--server-name", SERVER, "--http-port", "18561", "--sfu-port", "18562")
    config = load(folder / "homeserver.yaml")
    # A focus of LiveKit's type, found in the well-known and in Synapse's MSC4143 transports.
    focus = {"type": "livekit", "livekit_service_url": "http://127.0.0.1:18562"}
    assert config["extra_well_known_client_content"] == {"org.matrix.msc4143.rtc_foci": [focus]}
    assert config["matrix_rtc"] == {"transports": [focus]}
    assert config["experimental_features"] == {"msc4143_enabled": True, "msc4222_enabled": True}
    assert config["max_event_delay_duration"] == "24h"
    assert config["rc_delayed_event_mgmt"] == {"per_second": 10, "burst_count": 100}
    sfu = parse_sfu_config(load(folder / "sfu.yaml"))
    secrets = load(folder / "secrets.yaml")
    assert (sfu.jwt_secret, sfu.admin_api_secret) == (
        secrets["sfu_jwt_secret"],
        secrets["admin_api_secret"],
    )
    assert (sfu.homeserver_url, sfu.sfu_url, sfu.http_port) == (
        "http://127.0.0.1:18561",
        "http://127.0.0.1:18562",
        18562,
    )
    assert sfu.admin_api_url == "http://127.0.0.1:18561/_synapse/client/sferum/admin/v1"
    # The module puts the SFU's call page into rooms, at the URL clients reach the SFU at.
    assert parse_config(module_config(folder)).calls.public_url == sfu.sfu_url
    assert stat.S_IMODE((folder / "sfu.yaml").stat().st_mode) == 0o600
    [service] = [s for s in deployment_services(Deployment(folder), config) if s.name == "sfu"]
    assert service.argv[1:] == ("-m", "sfu", str(folder / "sfu.yaml"))
    assert service.health_url == "http://127.0.0.1:18562/health"
    check_config(Deployment(folder))  # Synapse accepts the keys (and 24h as a duration)

    assert main(["init", str(tmp_path / "x"), "--server-name", SERVER, "--sfu-port", "8008"]) == 1


def test_sfu_behind_a_tls_proxy_is_announced_at_its_public_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = init(
        tmp_path, "--server-name", SERVER, "--http-port", "18563", "--sfu-port", "18564",
        "--sfu-public-url", "https://sfu.school.example/",
    )  # fmt: skip
    config = load(folder / "homeserver.yaml")
    [focus] = config["extra_well_known_client_content"]["org.matrix.msc4143.rtc_foci"]
    assert focus["livekit_service_url"] == "https://sfu.school.example"
    assert config["matrix_rtc"]["transports"] == [focus]
    sfu = parse_sfu_config(load(folder / "sfu.yaml"))
    assert (sfu.sfu_url, sfu.http_port) == ("https://sfu.school.example", 18564)
    assert parse_config(module_config(folder)).calls.public_url == "https://sfu.school.example"
    # The health check still asks the SFU itself, not the proxy.
    [service] = [s for s in deployment_services(Deployment(folder), config) if s.name == "sfu"]
    assert service.health_url == "http://127.0.0.1:18564/health"

    lone = ["init", str(tmp_path / "y"), "--server-name", SERVER, "--sfu-public-url", "https://x/"]
    assert main(lone) == 1
    assert "--sfu-public-url needs --sfu-port" in capsys.readouterr().err


def test_sfu_edges_relay_broadcasts_from_processes_of_their_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = init(
        tmp_path, "--server-name", SERVER, "--http-port", "18570", "--sfu-port", "18571",
        "--sfu-edges", "2",
    )  # fmt: skip
    origin = parse_sfu_config(load(folder / "sfu.yaml"))
    assert origin.origin_url is None
    assert origin.edge_urls == ("http://127.0.0.1:18572", "http://127.0.0.1:18573")
    for number, port in ((1, 18572), (2, 18573)):
        edge = parse_sfu_config(load(folder / f"sfu-edge-{number}.yaml"))
        assert (edge.http_port, edge.sfu_url) == (port, f"http://127.0.0.1:{port}")
        assert edge.origin_url == "ws://127.0.0.1:18571/ws"
        assert edge.jwt_secret == origin.jwt_secret  # the edge signs its own relay token
        assert stat.S_IMODE((folder / f"sfu-edge-{number}.yaml").stat().st_mode) == 0o600
    config = load(folder / "homeserver.yaml")
    services = {s.name: s for s in deployment_services(Deployment(folder), config)}
    assert {"sfu", "sfu-edge-1", "sfu-edge-2"} <= set(services)
    assert services["sfu-edge-2"].health_url == "http://127.0.0.1:18573/health"
    assert services["sfu-edge-2"].argv[1:] == ("-m", "sfu", str(folder / "sfu-edge-2.yaml"))

    # Fewer edges: the ones no longer wanted are removed, so `start` runs only the rest.
    main(["init", str(folder), "--sfu-edges", "1"])
    assert "removed   sfu-edge-2.yaml" in capsys.readouterr().out
    assert [p.name for p in Deployment(folder).sfu_edge_configs()] == ["sfu-edge-1.yaml"]
    assert parse_sfu_config(load(folder / "sfu.yaml")).edge_urls == ("http://127.0.0.1:18572",)

    bad = ["init", str(tmp_path / "z"), "--server-name", SERVER]
    assert main([*bad, "--sfu-edges", "1"]) == 1
    assert "--sfu-edges needs --sfu-port" in capsys.readouterr().err
    assert main([*bad, "--http-port", "18581", "--sfu-port", "18580", "--sfu-edges", "1"]) == 1
    assert "an edge's port 18581 is --http-port's" in capsys.readouterr().err


def test_sfu_hands_out_the_deployments_turn(tmp_path: Path) -> None:
    folder = init(
        tmp_path, "--server-name", SERVER, "--http-port", "18590", "--sfu-port", "18591",
        "--turn-port", "18599", "--sfu-edges", "1",
    )  # fmt: skip
    config = load(folder / "homeserver.yaml")
    secret = load(folder / "secrets.yaml")["turn_shared_secret"]
    for name in ("sfu.yaml", "sfu-edge-1.yaml"):
        sfu = parse_sfu_config(load(folder / name))
        assert sfu.turn_uris == tuple(config["turn_uris"]), name  # the same coturn as 1:1 calls
        assert sfu.turn_shared_secret == secret == config["turn_shared_secret"]


def test_support_contacts_go_into_the_modules_config_and_are_kept(tmp_path: Path) -> None:
    plain = init(tmp_path / "plain", "--server-name", SERVER)
    assert "support" not in module_config(plain)  # nothing said: the well-known answers 404

    folder = init(
        tmp_path, "--server-name", SERVER, "--http-port", "18580",
        "--support-email", "admin@school1.example.org", "--support-page", "https://school1.example.org/help",
    )  # fmt: skip
    support = {"email": "admin@school1.example.org", "page": "https://school1.example.org/help"}
    assert module_config(folder)["support"] == support
    assert attrs.asdict(parse_config(module_config(folder)).support) == support
    check_config(Deployment(folder))
    # Stored with the other parameters: a re-run without them keeps them; one of them changes.
    assert main(["init", str(folder), "--support-page", "https://help.example.org/"]) == 0
    assert module_config(folder)["support"] == {**support, "page": "https://help.example.org/"}
    stored = load(folder / "sferum-init.yaml")
    assert (stored["support_email"], stored["support_page"]) == (
        "admin@school1.example.org",
        "https://help.example.org/",
    )


def test_each_init_parameter_is_declared_once() -> None:
    """The command line, sferum-init.yaml and InitParams come from one table of options."""
    declared = [option.name for option in params.INIT_OPTIONS]
    assert declared == [field.name for field in attrs.fields(params.InitParams)]
    assert len({option.option for option in params.INIT_OPTIONS}) == len(declared)
