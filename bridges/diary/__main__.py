"""`python -m bridges.diary BRIDGE.yaml`: runs the diary bridge until SIGTERM."""

from __future__ import annotations

import asyncio
import sys

from bridges.diary.config import BridgeConfig, load_config
from bridges.diary.daemon import serve
from sferum_shared.entry import run_service


def _serve(config: BridgeConfig) -> None:
    asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(run_service(sys.argv[1:], name="bridges.diary", load=load_config, serve=_serve))
