"""What every part's config parser shares: one error type, and reading a YAML file.

Each part (the Synapse module, the diary bridge, the SFU) parses its own keys into frozen attrs
classes; a wrong value raises ConfigError naming the dotted key and what is allowed there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

#: Where the diary bridge reads a school system: its config's `sources` and `sferumctl init
#: --diary-source` take these kinds (`KIND:LOCATION`).
DIARY_SOURCE_KINDS = ("oneroster-csv", "oneroster-rest", "push", "ical")


class ConfigError(ValueError):
    """A wrong config value: `key` is its dotted path, `within` where that path starts."""

    def __init__(self, key: str, message: str, *, within: str = ""):
        self.key = key
        self.message = message
        self.within = within
        super().__init__(f"{within}{key}: {message}")


def load_yaml_config(path: Path, parse: Callable[[Any], T]) -> T:
    """`parse` of the YAML in `path`; a ConfigError that names the file if anything is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(str(path), f"cannot be read: {e}") from None
    try:
        return parse(raw)
    except ConfigError as e:
        raise ConfigError(e.key, e.message, within=f"{path}: ") from None
