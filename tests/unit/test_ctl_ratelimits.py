"""Rate limits for a school behind one address: the defaults, `init --rate-limit`, conf.d."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml
from synapse.config.homeserver import HomeServerConfig
from synapse.config.ratelimiting import RatelimitSettings

from synapse_sferum.ctl.deployment import Deployment
from synapse_sferum.ctl.main import main
from synapse_sferum.ctl.ratelimits import (
    DEFAULT_RATE_LIMITS,
    Rate,
    merge_overrides,
    parse_rate,
    rate_limit_option,
    resolve_rate_limits,
)

SERVER = "school1.example.org"


def init(folder: Path, *args: str) -> None:
    assert main(["init", str(folder), "--server-name", SERVER, *args]) == 0


def synapse_limits(folder: Path) -> dict[str, RatelimitSettings]:
    """The limits as Synapse itself reads the deployment's config files (conf.d included)."""
    argv = [arg for path in Deployment(folder).config_files() for arg in ("-c", str(path))]
    with contextlib.chdir(folder):
        config = HomeServerConfig.load_config("test", argv).ratelimiting
    return {
        "login.address": config.rc_login_address,
        "login.account": config.rc_login_account,
        "login.failed_attempts": config.rc_login_failed_attempts,
        "registration": config.rc_registration,
        "registration_token_validity": config.rc_registration_token_validity,
        "3pid_validation": config.rc_3pid_validation,
        "message": config.rc_message,
        "delayed_event_mgmt": config.rc_delayed_event_mgmt,
        "joins_per_room": config.rc_joins_per_room,
        "joins.local": config.rc_joins_local,
        "joins.remote": config.rc_joins_remote,
    }


def as_rate(settings: RatelimitSettings) -> Rate:
    return Rate(settings.per_second, settings.burst_count)


def test_synapse_runs_with_the_school_defaults(tmp_path: Path) -> None:
    init(tmp_path / "d")
    limits = synapse_limits(tmp_path / "d")
    assert limits.keys() == DEFAULT_RATE_LIMITS.keys()  # every limit we set, Synapse reads
    assert {name: as_rate(s) for name, s in limits.items()} == DEFAULT_RATE_LIMITS


@pytest.mark.parametrize(
    ("name", "people", "seconds"),
    [
        ("login.address", 35, 60),  # a class signs in within a minute
        ("login.address", 100, 60),  # three classes at the same bell
        ("registration", 40, 600),  # a parents' meeting registers within ten minutes
        ("3pid_validation", 40, 600),  # each of them asks for an SMS
        ("registration_token_validity", 80, 600),  # each checks the code twice
        ("message", 20, 10),  # a teacher's homework round: 10 rooms, a message and a photo
    ],
)
def test_what_a_school_does_at_once_fits(name: str, people: int, seconds: int) -> None:
    rate = DEFAULT_RATE_LIMITS[name]
    assert rate.burst_count + rate.per_second * seconds >= people


def test_guessing_stays_limited_per_account() -> None:
    failed = DEFAULT_RATE_LIMITS["login.failed_attempts"]
    assert failed.burst_count < 10  # ten wrong passwords in a row meet a 429
    assert failed.per_second * 86400 <= 1500  # at most ~1,500 guesses a day on one account


def test_init_overrides_merge_and_go_back_to_the_default(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    init(folder, "--rate-limit", "login.address=1/200", "--rate-limit", "rc_message=1/60")
    limits = synapse_limits(folder)
    assert as_rate(limits["login.address"]) == Rate(1, 200)
    assert as_rate(limits["message"]) == Rate(1, 60)
    stored = yaml.safe_load((folder / "sferum-init.yaml").read_text())["rate_limits"]
    assert stored == {"login.address": "1/200", "message": "1/60"}

    assert main(["init", str(folder), "--rate-limit", "message=default"]) == 0
    limits = synapse_limits(folder)
    assert as_rate(limits["login.address"]) == Rate(1, 200)  # kept from the first run
    assert as_rate(limits["message"]) == DEFAULT_RATE_LIMITS["message"]
    assert main(["init", str(folder), "--rate-limit", "login.address=default"]) == 0
    assert "rate_limits" not in yaml.safe_load((folder / "sferum-init.yaml").read_text())


def test_conf_d_overrides_the_rendered_limits(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    init(folder)
    override = {"rc_login": {"address": {"per_second": 2, "burst_count": 500}}}
    (folder / "conf.d" / "60-limits.yaml").write_text(yaml.safe_dump(override))
    limits = synapse_limits(folder)
    assert as_rate(limits["login.address"]) == Rate(2, 500)
    # A top-level key replaces the rendered one as a whole: the other rc_login limits go back
    # to Synapse's own defaults unless the file names them too (the template's header says so).
    assert as_rate(limits["login.failed_attempts"]) == Rate(0.17, 3)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("login.address", "must be NAME=PER_SECOND/BURST"),
        ("logins=1/10", "unknown rate limit 'logins'; known: login.address"),
        ("message=fast", "message: must be PER_SECOND/BURST like 0.5/100"),
        ("message=0/10", "the rate must be above 0"),
        ("message=1/0", "the burst from 1 to 100000"),
        ("message=-1/10", "must be PER_SECOND/BURST"),
    ],
)
def test_bad_overrides_say_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    with pytest.raises(ValueError, match="") as error:
        rate_limit_option(value)
    assert message in str(error.value)
    with pytest.raises(SystemExit):
        main(["init", str(tmp_path / "d"), "--server-name", SERVER, "--rate-limit", value])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # nothing written


def test_a_hand_edited_init_file_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "d"
    init(folder)
    stored = folder / "sferum-init.yaml"
    stored.write_text(stored.read_text() + "rate_limits:\n  message: lots\n")
    assert main(["init", str(folder)]) == 1
    assert "rate_limits: message: must be PER_SECOND/BURST" in capsys.readouterr().err


def test_the_pure_parts() -> None:
    assert parse_rate("x", " 0.5/100 ") == Rate(0.5, 100)
    assert str(Rate(0.017, 5)) == "0.017/5"
    assert merge_overrides({"a": "1/2", "b": "3/4"}, {"b": "default", "c": "5/6"}) == {
        "a": "1/2",
        "c": "5/6",
    }
    resolved = resolve_rate_limits({"message": "2/40"})
    assert resolved["message"] == Rate(2, 40)
    assert resolved["login.address"] == DEFAULT_RATE_LIMITS["login.address"]
