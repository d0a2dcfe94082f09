"""`python -m sfu SFU.yaml`: runs the SFU (auth routes, `/health`, `/ws`) until SIGTERM."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import yaml
from aiohttp import web

from sferum_shared import SYSTEM_CLOCK
from sfu.config import SfuConfig, SfuConfigError, parse_config
from sfu.server import SfuServer


def load_config(path: Path) -> SfuConfig:
    """The config in a YAML file; SfuConfigError for a missing, unreadable or wrong file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise SfuConfigError("(file)", f"cannot read {path}: {e}") from None
    return parse_config(raw)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m sfu SFU.yaml", file=sys.stderr)
        return 2
    try:
        config = load_config(Path(argv[0]))
    except SfuConfigError as e:
        print(f"sfu: {e}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    web.run_app(
        SfuServer(config, SYSTEM_CLOCK).app(),
        host=config.http_bind,
        port=config.http_port,
        print=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
