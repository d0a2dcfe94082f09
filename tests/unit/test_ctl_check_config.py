"""`sferumctl check-config`: homeserver.yaml plus conf.d/, as Synapse and the module read them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from synapse_sferum.ctl.main import main


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "d"
    assert main(["init", str(folder), "--server-name", "localhost"]) == 0
    return folder


def modules_with(folder: Path, **rules: Any) -> dict[str, Any]:
    """A conf.d document replacing `modules:` with the rendered entry plus these rules."""
    [entry] = yaml.safe_load((folder / "homeserver.yaml").read_text())["modules"]
    entry["config"]["rules"].update(rules)
    return {"modules": [entry]}


def check(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["check-config", str(folder)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_fresh_deployment_is_ok(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(folder, capsys) == (0, "config OK\n", "")


def test_module_error_names_the_key(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "conf.d" / "50-rules.yaml").write_text(
        yaml.safe_dump(modules_with(folder, min_account_age_years=40))
    )
    code, _, err = check(folder, capsys)
    assert code == 1
    assert err == (
        "check-config: modules[synapse_sferum].config.rules.min_account_age_years: "
        "must be a whole number from 0 to 18, got 40\n"
    )


def test_later_conf_d_files_override_earlier_ones(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf_d = folder / "conf.d"
    (conf_d / "10-bad.yaml").write_text(yaml.safe_dump(modules_with(folder, adult_age_years=99)))
    assert check(folder, capsys)[0] == 1
    (conf_d / "20-good.yaml").write_text(yaml.safe_dump(modules_with(folder, adult_age_years=16)))
    assert check(folder, capsys)[0] == 0
    (conf_d / "notes.txt").write_text("modules: 3")  # only *.yaml counts
    assert check(folder, capsys)[0] == 0


def test_synapse_errors_are_shown(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Synapse refuses open registration with neither a token, a phone nor a captcha.
    (folder / "conf.d" / "open.yaml").write_text(
        "registration_requires_token: false\nregistrations_require_3pid: []\n"
    )
    code, _, err = check(folder, capsys)
    assert code == 1
    assert err.startswith("check-config: Error in configuration")
    assert "open registration without any verification" in err


def test_values_synapse_does_not_type_check_still_give_an_error(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "conf.d" / "bad.yaml").write_text("federation_domain_whitelist: 3\n")
    code, _, err = check(folder, capsys)
    assert code == 1
    assert err.startswith("check-config: Synapse cannot read the config: TypeError: ")
    assert "(in synapse/config/federation.py:" in err


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("modules: []\n", "modules: no entry `- module: synapse_sferum.SferumModule`"),
        ("modules: {a: 1}\n", "modules: must be a list"),
        ("listeners: [\n", "conf.d/x.yaml: not valid YAML"),
        ("- 1\n", "conf.d/x.yaml: must be a YAML mapping"),
    ],
)
def test_broken_overrides(
    folder: Path, capsys: pytest.CaptureFixture[str], document: str, message: str
) -> None:
    (folder / "conf.d" / "x.yaml").write_text(document)
    code, _, err = check(folder, capsys)
    assert code == 1
    assert message in err


def test_module_listed_twice(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = modules_with(folder)["modules"][0]
    (folder / "conf.d" / "x.yaml").write_text(yaml.safe_dump({"modules": [entry, entry]}))
    assert "listed 2 times" in check(folder, capsys)[2]


def test_broken_app_service_file(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    appservice = folder / "appservice-sferum.yaml"
    appservice.write_text(appservice.read_text().replace("id: sferum", "name: sferum"))
    code, _, err = check(folder, capsys)
    assert code == 1
    assert f"check-config: app_service_config_files: {appservice}:" in err
    assert "'id'" in err


def test_not_a_deployment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = check(tmp_path, capsys)
    assert code == 1
    assert err == (
        f"check-config: {tmp_path} is not a deployment (no homeserver.yaml); "
        f"create it with: sferumctl init {tmp_path} --server-name NAME\n"
    )
