"""Parses and validates the module's config into frozen attrs classes.

Every error names the key (as a dotted path under the module's `config:`) and what is allowed,
so that `sferumctl check-config` and Synapse's own start-up print the same useful message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

KEY_PREFIX = "modules[synapse_sferum].config"


class SferumConfigError(ValueError):
    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{KEY_PREFIX}.{key}: {message}")


@attrs.frozen
class RulesConfig:
    min_account_age_years: int = 6
    adult_age_years: int = 18
    allow_encrypted_dms: bool = False


@attrs.frozen
class ProvisioningConfig:
    enabled: bool = True
    reconcile_interval_seconds: int = 300


@attrs.frozen
class SferumConfig:
    admin_api_secret: str
    bot_localpart: str = "sferum"
    partner_servers: frozenset[str] = frozenset()
    rules: RulesConfig = RulesConfig()
    provisioning: ProvisioningConfig = ProvisioningConfig()


_TOP_KEYS = {"admin_api_secret", "bot_localpart", "partner_servers", "rules", "provisioning"}
_RULES_KEYS = {"min_account_age_years", "adult_age_years", "allow_encrypted_dms"}
_PROVISIONING_KEYS = {"enabled", "reconcile_interval_seconds"}


def _check_keys(section: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in section:
        if key not in allowed:
            path = f"{where}.{key}" if where else str(key)
            raise SferumConfigError(
                path, f"unknown key; allowed keys: {', '.join(sorted(allowed))}"
            )


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SferumConfigError(key, f"must be a mapping, got {type(value).__name__}")
    return value


def _bool(section: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise SferumConfigError(f"{where}.{key}", f"must be true or false, got {value!r}")
    return value


def _int(section: Mapping[str, Any], key: str, where: str, default: int, lo: int, hi: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SferumConfigError(
            f"{where}.{key}", f"must be a whole number from {lo} to {hi}, got {value!r}"
        )
    return value


def _str(raw: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise SferumConfigError(key, f"must be a non-empty string, got {value!r}")
    return value


def parse_config(raw: Mapping[str, Any] | None) -> SferumConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SferumConfigError("", f"must be a mapping, got {type(raw).__name__}")
    _check_keys(raw, _TOP_KEYS, "")

    secret = _str(raw, "admin_api_secret")
    if len(secret) < 16:
        raise SferumConfigError("admin_api_secret", "must be at least 16 characters long")

    bot_localpart = _str(raw, "bot_localpart", "sferum")
    if not bot_localpart.isascii() or bot_localpart.lower() != bot_localpart:
        raise SferumConfigError("bot_localpart", "must be lower-case ASCII, like 'sferum'")

    partners = raw.get("partner_servers", [])
    if not isinstance(partners, list) or not all(isinstance(p, str) and p for p in partners):
        raise SferumConfigError(
            "partner_servers", f"must be a list of server names, got {partners!r}"
        )

    rules_raw = _section(raw, "rules")
    _check_keys(rules_raw, _RULES_KEYS, "rules")
    rules = RulesConfig(
        min_account_age_years=_int(rules_raw, "min_account_age_years", "rules", 6, 0, 18),
        adult_age_years=_int(rules_raw, "adult_age_years", "rules", 18, 1, 21),
        allow_encrypted_dms=_bool(rules_raw, "allow_encrypted_dms", "rules", False),
    )

    prov_raw = _section(raw, "provisioning")
    _check_keys(prov_raw, _PROVISIONING_KEYS, "provisioning")
    provisioning = ProvisioningConfig(
        enabled=_bool(prov_raw, "enabled", "provisioning", True),
        reconcile_interval_seconds=_int(
            prov_raw, "reconcile_interval_seconds", "provisioning", 300, 5, 86400
        ),
    )
    return SferumConfig(
        admin_api_secret=secret,
        bot_localpart=bot_localpart,
        partner_servers=frozenset(partners),
        rules=rules,
        provisioning=provisioning,
    )
