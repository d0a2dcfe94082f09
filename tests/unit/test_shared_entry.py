"""`python -m bridges.diary` and `python -m sfu` start alike: usage, config errors, serving."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from sferum_shared.config import ConfigError, load_yaml_config
from sferum_shared.entry import run_service


@attrs.frozen
class Config:
    port: int
    log_format: str = "text"


def parse(raw: object) -> Config:
    if not isinstance(raw, dict) or "port" not in raw:
        raise ConfigError("port", "is required")
    return Config(**raw)


def load(path: Path) -> Config:
    return load_yaml_config(path, parse)


def test_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_service([], name="sfu", load=load, serve=lambda c: None) == 2
    assert "usage: python -m sfu CONFIG.yaml" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot be read"),
        ("port: [", "cannot be read"),
        ("other: 1\n", ": port: is required"),
    ],
)
def test_a_wrong_config_names_the_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, message: str
) -> None:
    path = tmp_path / "sfu.yaml"
    if text is not None:
        path.write_text(text)
    served: list[object] = []
    assert run_service([str(path)], name="sfu", load=load, serve=served.append) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sfu: {path}") and message in err
    assert served == []


def test_a_good_config_is_served(tmp_path: Path) -> None:
    path = tmp_path / "sfu.yaml"
    path.write_text("port: 8010\n")
    served: list[object] = []
    assert run_service([str(path)], name="sfu", load=load, serve=served.append) == 0
    assert served == [Config(8010)]
