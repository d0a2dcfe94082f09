"""Synapse's rate limits as a school needs them, and `sferumctl init --rate-limit` overrides.

Synapse's defaults are tuned for the open internet, where one address is one person. A school
is one address: a classroom or a parents' meeting on the school's Wi-Fi sits behind one NAT.
So the limits per address are sized for a class signing in at once and a meeting registering
together, while guessing stays limited where it is aimed, per account (failed passwords) and
per code and phone (the module's own limits on linking codes and SMS). Why each number is what
it is, is written beside it in `synapse_sferum/templates/homeserver.yaml.j2`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs


@attrs.frozen
class Rate:
    """One of Synapse's `{per_second, burst_count}` blocks."""

    per_second: float
    burst_count: int

    def __str__(self) -> str:
        return f"{self.per_second:g}/{self.burst_count}"


#: Every limit the rendered homeserver.yaml sets, by its Synapse key without the `rc_` prefix.
DEFAULT_RATE_LIMITS: Mapping[str, Rate] = {
    "login.address": Rate(0.5, 100),
    "login.account": Rate(0.017, 10),
    "login.failed_attempts": Rate(0.017, 5),
    "registration": Rate(0.1, 50),
    "registration_token_validity": Rate(0.2, 100),
    "3pid_validation": Rate(0.1, 100),
    "message": Rate(0.5, 30),
    "delayed_event_mgmt": Rate(10, 100),
    "joins_per_room": Rate(10, 100),
    "joins.local": Rate(1, 60),
    "joins.remote": Rate(0.01, 10),
}
_RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?)/([0-9]+)")
RESET = "default"


def parse_rate(name: str, value: object) -> Rate:
    """`PER_SECOND/BURST`, like `0.5/100`: half an action a second, 100 at once."""
    match = _RATE.fullmatch(str(value).strip())
    if match is None:
        raise ValueError(
            f"{name}: must be PER_SECOND/BURST like 0.5/100 (or {RESET!r}), got {value!r}"
        )
    per_second, burst = float(match[1]), int(match[2])
    if not 0 < per_second <= 1000 or not 1 <= burst <= 100_000:
        raise ValueError(
            f"{name}: the rate must be above 0 and at most 1000 a second and the burst from "
            f"1 to 100000, got {value!r}"
        )
    return Rate(per_second, burst)


def _known(name: str) -> str:
    if name not in DEFAULT_RATE_LIMITS:
        raise ValueError(f"unknown rate limit {name!r}; known: {', '.join(DEFAULT_RATE_LIMITS)}")
    return name


def rate_limit_option(value: object) -> tuple[str, str]:
    """One `--rate-limit NAME=PER_SECOND/BURST` (or `NAME=default`), checked."""
    name, sep, rate = str(value).partition("=")
    if not sep:
        raise ValueError(
            f"must be NAME=PER_SECOND/BURST like login.address=0.5/100, got {value!r}"
        )
    name = _known(name.strip().removeprefix("rc_"))
    rate = rate.strip()
    return name, rate if rate == RESET else str(parse_rate(name, rate))


def rate_limit_overrides(value: object) -> dict[str, str]:
    """Overrides as `sferum-init.yaml` keeps them: {NAME: "PER_SECOND/BURST" or "default"}."""
    if isinstance(value, Mapping):
        pairs: Iterable[object] = (f"{name}={rate}" for name, rate in value.items())
    elif isinstance(value, list | tuple):
        pairs = value
    else:
        raise ValueError(f"must be a mapping of NAME: PER_SECOND/BURST, got {value!r}")
    return dict(rate_limit_option(pair) for pair in pairs)


def merge_overrides(older: Mapping[str, str], newer: Mapping[str, str]) -> dict[str, str]:
    """`newer` over `older`; a limit set to `default` goes back to the default."""
    merged = {**older, **newer}
    return {name: rate for name, rate in merged.items() if rate != RESET}


def resolve_rate_limits(overrides: Mapping[str, str]) -> dict[str, Rate]:
    """Every limit: the override where one is given, the default otherwise."""
    return {
        name: parse_rate(name, overrides[name]) if name in overrides else default
        for name, default in DEFAULT_RATE_LIMITS.items()
    }
