"""`python -m sfu SFU.yaml`: runs the SFU (auth routes, `/health`, `/ws`) until SIGTERM."""

from __future__ import annotations

import sys

from aiohttp import web

from sferum_shared import SYSTEM_CLOCK
from sferum_shared.entry import run_service
from sfu.config import SfuConfig, load_config
from sfu.server import SfuServer


def _serve(config: SfuConfig) -> None:
    web.run_app(
        SfuServer(config, SYSTEM_CLOCK).app(),
        host=config.http_bind,
        port=config.http_port,
        print=None,
    )


if __name__ == "__main__":
    sys.exit(run_service(sys.argv[1:], name="sfu", load=load_config, serve=_serve))
