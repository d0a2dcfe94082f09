"""How the platform's services start: `python -m PART CONFIG.yaml`, the same for each part."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from sferum_shared import logs
from sferum_shared.config import ConfigError


class ServiceConfig(Protocol):
    @property
    def log_format(self) -> str: ...  # logs.LOG_FORMATS


C = TypeVar("C", bound=ServiceConfig)


def run_service(
    argv: list[str], *, name: str, load: Callable[[Path], C], serve: Callable[[C], None]
) -> int:
    """Loads the one config file named on the command line and serves until stopped.

    The exit code says what happened: 2 for a wrong command line, 1 for a wrong config (the
    message names the file and key), 0 after a clean stop.
    """
    if len(argv) != 1:
        print(f"usage: python -m {name} CONFIG.yaml", file=sys.stderr)
        return 2
    try:
        config = load(Path(argv[0]))
    except ConfigError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    logs.configure(config.log_format)
    serve(config)
    return 0
