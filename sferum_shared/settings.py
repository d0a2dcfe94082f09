"""Config sections as attrs classes whose fields carry their own default, range and meaning.

One declaration per key gives everything that follows from it: the default, the allowed keys of
the section, the parsing and its error message (naming the key and what is allowed), and the
comment `sferumctl init` writes above the key in the config file (`comment`). Keys that need
more than a type and a range (a URL, a time zone, a nested backend) are parsed by the section's
own code and passed in as `special`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
from attrs import AttrsInstance

from sferum_shared.config import ConfigError

T = TypeVar("T", bound=AttrsInstance)
_META = "sferum_setting"


@attrs.frozen
class Setting:
    doc: str  # what the key means, for the person editing the file
    low: int | None = None  # whole numbers: the allowed range
    high: int | None = None

    def allowed(self) -> str:
        return f"{self.low} to {self.high}" if self.low is not None else ""


def setting(default: Any, doc: str, *, low: int | None = None, high: int | None = None) -> Any:
    """A config key: its default, what it means and, for whole numbers, its range."""
    return attrs.field(default=default, metadata={_META: Setting(doc, low, high)})


def describe(section: type, name: str) -> Setting:
    meta = attrs.fields_dict(section)[name].metadata.get(_META)
    if meta is None:
        raise KeyError(f"{section.__name__}.{name} is not declared with setting()")
    return meta  # type: ignore[no-any-return]


def comment(section: type, name: str, indent: int) -> str:
    """The key's meaning (and range) as YAML comment lines, for a config template."""
    meta = describe(section, name)
    text = f"{meta.doc} ({meta.allowed()})." if meta.allowed() else f"{meta.doc}."
    prefix = " " * indent + "# "
    return "\n".join(textwrap.wrap(text, 99, initial_indent=prefix, subsequent_indent=prefix))


ErrorFor = Callable[[str, str], ConfigError]


def check_keys(raw: Mapping[str, Any], allowed: set[str], where: str, error: ErrorFor) -> None:
    for key in raw:
        if key not in allowed:
            path = f"{where}.{key}" if where else str(key)
            raise error(path, f"unknown key; allowed keys: {', '.join(sorted(allowed))}")


def parse_section(
    section: type[T],
    raw: Mapping[str, Any],
    where: str,
    error: ErrorFor,
    special: Mapping[str, Any] | None = None,
) -> T:
    """The section's values from `raw`; `special` holds the keys its own code has parsed."""
    fields = attrs.fields_dict(section)
    check_keys(raw, set(fields), where, error)
    values = dict(special or {})
    for name, field in fields.items():
        if name in values or name not in raw:
            continue
        values[name] = _checked(raw[name], field, f"{where}.{name}" if where else name, error)
    return section(**values)


def _checked(value: Any, field: attrs.Attribute[Any], key: str, error: ErrorFor) -> Any:
    meta: Setting | None = field.metadata.get(_META)
    if isinstance(field.default, bool):
        if not isinstance(value, bool):
            raise error(key, f"must be true or false, got {value!r}")
        return value
    if isinstance(field.default, int):
        lo, hi = (meta.low, meta.high) if meta else (None, None)
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not whole or (lo is not None and value < lo) or (hi is not None and value > hi):
            raise error(key, f"must be a whole number from {lo} to {hi}, got {value!r}")
        return value
    if not isinstance(value, str) or not value.strip():
        raise error(key, f"must be a non-empty string, got {value!r}")
    return value
