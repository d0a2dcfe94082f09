"""`sferumctl systemd`: one unit per service, as the supervisor runs it, and a target over them."""

from __future__ import annotations

import configparser
import os
import pwd
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from synapse_sferum.ctl import services, systemd
from synapse_sferum.ctl.deployment import Deployment
from synapse_sferum.ctl.main import main
from synapse_sferum.ctl.services import Service
from synapse_sferum.ctl.supervision import DEFAULT_POLICY


def parse(text: str) -> configparser.RawConfigParser:
    ini = configparser.RawConfigParser(strict=True, delimiters=("=",), comment_prefixes=("#",))
    ini.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    ini.read_string(text)
    return ini


def unsystemd(word: str) -> str:
    """A systemd_word back as the string it stands for (for words shlex can split)."""
    return word.replace("%%", "%").replace("$$", "$")


def service(tmp_path: Path, name: str, **fields: object) -> Service:
    return Service(
        **{
            "name": name,
            "argv": ("/usr/bin/python3", "-m", name, str(tmp_path / f"{name}.yaml")),
            "identity": (name,),
            "health_url": None,
            "log_path": tmp_path / "logs" / f"{name}.out",
            "pid_path": tmp_path / "run" / f"{name}.pid",
            "cwd": tmp_path,
            **fields,
        }  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("folder", "prefix"),
    [
        ("school", "sferum-school"),
        ("school-5_a.b:c", "sferum-school-5_a.b:c"),
        ("my school", "sferum-my\\x20school"),
        (".hidden", "sferum-\\x2ehidden"),
        ("школа", "sferum-\\xd1\\x88\\xd0\\xba\\xd0\\xbe\\xd0\\xbb\\xd0\\xb0"),
    ],
)
def test_unit_prefix(folder: str, prefix: str) -> None:
    assert systemd.unit_prefix(folder) == prefix


@pytest.mark.parametrize(
    ("value", "word"),
    [
        ("/usr/bin/python3", "/usr/bin/python3"),
        ("PYTHONPATH=/a:/b", "PYTHONPATH=/a:/b"),
        ("100%", "100%%"),
        ("$HOME", "$$HOME"),
        ("a b", '"a b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("", '""'),
    ],
)
def test_systemd_word(value: str, word: str) -> None:
    assert systemd.systemd_word(value) == word


def test_units_run_the_services_as_the_supervisor_does_in_order(tmp_path: Path) -> None:
    root = tmp_path / "school"
    redis = service(root, "redis")
    synapse = service(
        root, "synapse", requires=("redis",), env={"PYTHONPATH": "/src:/lib 2"}, sd_notify=True
    )
    worker = service(root, "worker-1", requires=("synapse",), stop_grace=7)
    bridge = service(root, "diary-bridge", after=("synapse",))
    units = systemd.render_units(
        root, [redis, synapse, worker, bridge], user="sferum", system_after=["postgresql.service"]
    )
    target = "sferum-school.target"
    names = [f"sferum-school-{s.name}.service" for s in (redis, synapse, worker, bridge)]
    assert list(units) == [*names, target]

    for unit, record in zip(names, (redis, synapse, worker, bridge), strict=True):
        ini = parse(units[unit])
        assert shlex.split(ini["Service"]["ExecStart"]) == list(record.argv)
        assert ini["Service"]["User"] == "sferum"
        assert ini["Service"]["Type"] == ("notify" if record.sd_notify else "simple")
        assert ini["Service"]["WorkingDirectory"] == str(root)
        assert ini["Service"]["StandardOutput"] == f"append:{record.log_path}"
        assert ini["Service"]["Restart"] == "on-failure"
        assert ini["Service"]["RestartSec"] == f"{DEFAULT_POLICY.first_delay:g}"
        assert ini["Service"]["RestartMaxDelaySec"] == f"{DEFAULT_POLICY.max_delay:g}"
        assert ini["Service"]["TimeoutStopSec"] == f"{record.stop_grace:g}"
        assert ini["Unit"]["StartLimitIntervalSec"] == "0"
        assert ini["Unit"]["PartOf"] == target
        assert ini["Install"]["WantedBy"] == target

    def deps(name: str, key: str) -> list[str]:
        return parse(units[f"sferum-school-{name}.service"])["Unit"].get(key, "").split()

    assert deps("redis", "After") == ["postgresql.service"]
    assert deps("synapse", "After") == ["postgresql.service", "sferum-school-redis.service"]
    assert deps("synapse", "Requires") == ["sferum-school-redis.service"]
    assert deps("worker-1", "Requires") == ["sferum-school-synapse.service"]
    assert deps("diary-bridge", "After") == ["postgresql.service", "sferum-school-synapse.service"]
    assert deps("diary-bridge", "Wants") == ["sferum-school-synapse.service"]
    assert deps("diary-bridge", "Requires") == []
    assert shlex.split(parse(units[names[1]])["Service"]["Environment"]) == [
        "PYTHONPATH=/src:/lib 2"
    ]
    assert parse(units[target])["Unit"]["Wants"].split() == names
    assert parse(units[target])["Install"]["WantedBy"] == "multi-user.target"


def test_percent_and_dollar_are_kept_literally(tmp_path: Path) -> None:
    root = tmp_path / "school"
    odd = service(root, "synapse", argv=("/usr/bin/python3", "-c", "print('100%', '$HOME')"))
    ini = parse(systemd.render_units(root, [odd], user="u")["sferum-school-synapse.service"])
    assert [unsystemd(w) for w in shlex.split(ini["Service"]["ExecStart"])] == list(odd.argv)


def test_a_dependency_on_no_such_service_is_refused(tmp_path: Path) -> None:
    worker = service(tmp_path, "worker-1", requires=("synapse",))
    unknown = r"worker-1 names services that do not exist: \['synapse'\]"
    with pytest.raises(ValueError, match=unknown):
        systemd.render_units(tmp_path, [worker], user="u")


# Keys systemd 254 added; an older systemd-analyze warns about them and ignores them.
NEWER_KEYS = ("RestartSteps", "RestartMaxDelaySec")


def test_sferumctl_systemd_writes_units_that_systemd_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "school"
    assert main(["init", str(folder), "--server-name", "localhost", "--sfu-port", "18557"]) == 0
    out = tmp_path / "units"
    capsys.readouterr()
    user = pwd.getpwuid(os.getuid()).pw_name  # one systemd knows (it warns about `nobody`)
    assert main(["systemd", str(folder), "--user", user, "--out", str(out)]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[-1] == "      systemctl enable --now sferum-school.target"
    deployment = Deployment(folder)
    records = services.deployment_services(deployment, deployment.load_config())
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(
        ["sferum-school.target", *(f"sferum-school-{s.name}.service" for s in records)]
    )
    for record in records:
        ini = parse((out / f"sferum-school-{record.name}.service").read_text())
        assert shlex.split(ini["Service"]["ExecStart"]) == list(record.argv)
        assert ini["Service"]["User"] == user
        assert ini["Service"]["Type"] == ("notify" if record.name == "synapse" else "simple")
        assert "postgresql.service" not in ini["Unit"].get("After", "")  # SQLite here
    sfu = parse((out / "sferum-school-sfu.service").read_text())
    assert sfu["Unit"]["After"].split() == ["sferum-school-synapse.service"]

    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the units were not verified by systemd")
    verified = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in out.iterdir())],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    complaints = [
        line
        for line in (verified.stdout + verified.stderr).splitlines()
        if not any(f"Unknown key '{key}'" in line for key in NEWER_KEYS)
    ]
    assert verified.returncode == 0 and complaints == [], verified


def test_postgresql_comes_first_when_it_is_the_database(tmp_path: Path) -> None:
    folder = tmp_path / "school"
    dsn = "postgresql://sferum@127.0.0.1:5432/sferum"
    assert main(["init", str(folder), "--server-name", "localhost", "--database", dsn]) == 0
    deployment = Deployment(folder)
    systemd.write_units(deployment, deployment.load_config(), tmp_path / "units", user="u")
    ini = parse((tmp_path / "units" / "sferum-school-synapse.service").read_text())
    assert ini["Unit"]["After"].split() == [systemd.POSTGRESQL_UNIT]
    assert sys.executable == shlex.split(ini["Service"]["ExecStart"])[0]
