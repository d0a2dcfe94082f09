"""`python -m bridges.diary BRIDGE.yaml`: runs the diary bridge until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from bridges.diary.config import BridgeConfigError, load_config
from bridges.diary.daemon import serve


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bridges.diary BRIDGE.yaml", file=sys.stderr)
        return 2
    try:
        config = load_config(Path(argv[0]))
    except BridgeConfigError as e:
        print(f"diary bridge: {e}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
