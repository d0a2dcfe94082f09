"""Parses and validates the module's config into frozen attrs classes.

Every error names the key (as a dotted path under the module's `config:`) and what is allowed,
so that `sferumctl check-config` and Synapse's own start-up print the same useful message.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from typing import Any

import attrs

from sferum_shared.config import ConfigError
from synapse_sferum.policy.quiet import (
    DEFAULT_TIMEZONE,
    QuietHoursConfig,
    ScheduleError,
    check_timezone,
)

KEY_PREFIX = "modules[synapse_sferum].config"


def _error(key: str, message: str) -> ConfigError:
    return ConfigError(key, message, within=f"{KEY_PREFIX}.")


@attrs.frozen
class RulesConfig:
    min_account_age_years: int = 6
    adult_age_years: int = 18
    allow_encrypted_dms: bool = False


@attrs.frozen
class ProvisioningConfig:
    enabled: bool = True
    reconcile_interval_seconds: int = 300
    # Accounts of people deleted from the roster are shut at once, deactivated after this.
    deactivate_after_hours: int = 24


@attrs.frozen
class FileSmsConfig:
    """Development and demo gateway: each SMS is a JSON line {"to", "text", "ts"} in a file."""

    path: str


@attrs.frozen
class HttpSmsConfig:
    """A real SMS provider's HTTP API; the body is a jinja2 template over `to` and `text`."""

    url: str
    method: str = "POST"
    body_template: str = '{"to": {{ to | tojson }}, "text": {{ text | tojson }}}'
    content_type: str = "application/json"
    auth_header: str | None = None


@attrs.frozen
class PhoneConfig:
    default_region: str = "RU"
    code_ttl_seconds: int = 600
    max_attempts: int = 5
    max_sms_per_hour: int = 3
    max_sms_per_hour_total: int = 200
    sms: FileSmsConfig | HttpSmsConfig | None = None


@attrs.frozen
class LinkCodesConfig:
    expiry_days: int = 14


@attrs.frozen
class AccountsConfig:
    # A school-issued account's printed password stops working this many days after it was
    # issued (and at once when the account gets a password of its own).
    initial_password_days: int = 30


@attrs.frozen
class CallsConfig:
    # Where browsers reach the school's SFU (its call page is `/call`); None: no SFU, so no
    # call widget in lesson, broadcast and class news rooms.
    public_url: str | None = None


@attrs.frozen
class SferumConfig:
    admin_api_secret: str
    bot_localpart: str = "sferum"
    # The school's time zone: its midnight starts the day by which ages and birthdays count.
    timezone: str = DEFAULT_TIMEZONE
    partner_servers: frozenset[str] = frozenset()
    rules: RulesConfig = RulesConfig()
    provisioning: ProvisioningConfig = ProvisioningConfig()
    phone: PhoneConfig = PhoneConfig()
    link_codes: LinkCodesConfig = LinkCodesConfig()
    accounts: AccountsConfig = AccountsConfig()
    quiet_hours: QuietHoursConfig = attrs.field(factory=QuietHoursConfig)
    calls: CallsConfig = CallsConfig()

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


_TOP_KEYS = {
    "admin_api_secret",
    "bot_localpart",
    "timezone",
    "partner_servers",
    "rules",
    "provisioning",
    "phone",
    "link_codes",
    "accounts",
    "quiet_hours",
    "calls",
}
_QUIET_KEYS = {"enabled", "default_timezone", "check_interval_seconds"}
_RULES_KEYS = {"min_account_age_years", "adult_age_years", "allow_encrypted_dms"}
_PROVISIONING_KEYS = {"enabled", "reconcile_interval_seconds", "deactivate_after_hours"}
_PHONE_KEYS = {
    "default_region",
    "code_ttl_seconds",
    "max_attempts",
    "max_sms_per_hour",
    "max_sms_per_hour_total",
    "sms",
}
_SMS_FILE_KEYS = {"backend", "path"}
_SMS_HTTP_KEYS = {"backend", "url", "method", "body_template", "content_type", "auth_header"}
_LINK_CODES_KEYS = {"expiry_days"}
_ACCOUNTS_KEYS = {"initial_password_days"}
_CALLS_KEYS = {"public_url"}
_HTTP_METHODS = ("POST", "PUT", "GET")


def _check_keys(section: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in section:
        if key not in allowed:
            path = f"{where}.{key}" if where else str(key)
            raise _error(
                path, f"unknown key; allowed keys: {', '.join(sorted(allowed))}"
            )


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _error(key, f"must be a mapping, got {type(value).__name__}")
    return value


def _bool(section: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise _error(f"{where}.{key}", f"must be true or false, got {value!r}")
    return value


def _int(section: Mapping[str, Any], key: str, where: str, default: int, lo: int, hi: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _error(
            f"{where}.{key}", f"must be a whole number from {lo} to {hi}, got {value!r}"
        )
    return value


def _str(raw: Mapping[str, Any], key: str, default: str | None = None, where: str = "") -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value.strip():
        path = f"{where}.{key}" if where else key
        raise _error(path, f"must be a non-empty string, got {value!r}")
    return value


def _http_url(raw: Mapping[str, Any], key: str, where: str) -> str:
    url = _str(raw, key, where=where)
    if not url.startswith(("http://", "https://")):
        raise _error(f"{where}.{key}", f"must be an http(s) URL, got {url!r}")
    return url


def _sms(raw: Any) -> FileSmsConfig | HttpSmsConfig | None:
    if raw is None:
        return None
    where = "phone.sms"
    if not isinstance(raw, Mapping):
        raise _error(where, f"must be a mapping, got {type(raw).__name__}")
    backend = raw.get("backend")
    if backend == "file":
        _check_keys(raw, _SMS_FILE_KEYS, where)
        return FileSmsConfig(path=_str(raw, "path", where=where))
    if backend == "http":
        _check_keys(raw, _SMS_HTTP_KEYS, where)
        url = _http_url(raw, "url", where)
        method = _str(raw, "method", "POST", where).upper()
        if method not in _HTTP_METHODS:
            raise _error(
                f"{where}.method", f"must be one of {', '.join(_HTTP_METHODS)}, got {method!r}"
            )
        auth = raw.get("auth_header")
        if auth is not None and (not isinstance(auth, str) or not auth.strip()):
            raise _error(f"{where}.auth_header", f"must be a string, got {auth!r}")
        default = HttpSmsConfig(url=url)
        return HttpSmsConfig(
            url=url,
            method=method,
            body_template=_str(raw, "body_template", default.body_template, where),
            content_type=_str(raw, "content_type", default.content_type, where),
            auth_header=auth,
        )
    raise _error(f"{where}.backend", f"must be 'file' or 'http', got {backend!r}")


def _timezone(raw: Mapping[str, Any], key: str, default: str) -> str:
    try:
        return check_timezone(raw.get(key.rpartition(".")[2], default), "")
    except ScheduleError as e:
        raise _error(key, str(e)) from None


def _quiet_hours(raw: Mapping[str, Any], school_timezone: str) -> QuietHoursConfig:
    """Hours set without a time zone are in the school's, unless `default_timezone` says."""
    _check_keys(raw, _QUIET_KEYS, "quiet_hours")
    zone = _timezone(raw, "quiet_hours.default_timezone", school_timezone)
    return QuietHoursConfig(
        enabled=_bool(raw, "enabled", "quiet_hours", True),
        default_timezone=zone,
        check_interval_seconds=_int(raw, "check_interval_seconds", "quiet_hours", 30, 5, 3600),
    )


def _calls(raw: Mapping[str, Any]) -> CallsConfig:
    _check_keys(raw, _CALLS_KEYS, "calls")
    if raw.get("public_url") is None:
        return CallsConfig()
    return CallsConfig(public_url=_http_url(raw, "public_url", "calls"))


def _phone(raw: Mapping[str, Any]) -> PhoneConfig:
    _check_keys(raw, _PHONE_KEYS, "phone")
    region = raw.get("default_region", "RU")
    if not isinstance(region, str) or len(region) != 2 or not region.isalpha():
        raise _error(
            "phone.default_region", f"must be a two-letter region code like RU, got {region!r}"
        )
    return PhoneConfig(
        default_region=region.upper(),
        code_ttl_seconds=_int(raw, "code_ttl_seconds", "phone", 600, 60, 3600),
        max_attempts=_int(raw, "max_attempts", "phone", 5, 1, 20),
        max_sms_per_hour=_int(raw, "max_sms_per_hour", "phone", 3, 1, 100),
        max_sms_per_hour_total=_int(raw, "max_sms_per_hour_total", "phone", 200, 1, 100_000),
        sms=_sms(raw.get("sms")),
    )


def parse_config(raw: Mapping[str, Any] | None) -> SferumConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _error("", f"must be a mapping, got {type(raw).__name__}")
    _check_keys(raw, _TOP_KEYS, "")

    secret = _str(raw, "admin_api_secret")
    if len(secret) < 16:
        raise _error("admin_api_secret", "must be at least 16 characters long")

    bot_localpart = _str(raw, "bot_localpart", "sferum")
    if not bot_localpart.isascii() or bot_localpart.lower() != bot_localpart:
        raise _error("bot_localpart", "must be lower-case ASCII, like 'sferum'")

    partners = raw.get("partner_servers", [])
    if not isinstance(partners, list) or not all(isinstance(p, str) and p for p in partners):
        raise _error(
            "partner_servers", f"must be a list of server names, got {partners!r}"
        )

    timezone = _timezone(raw, "timezone", DEFAULT_TIMEZONE)

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
        deactivate_after_hours=_int(
            prov_raw, "deactivate_after_hours", "provisioning", 24, 0, 8760
        ),
    )
    link_raw = _section(raw, "link_codes")
    _check_keys(link_raw, _LINK_CODES_KEYS, "link_codes")
    link_codes = LinkCodesConfig(
        expiry_days=_int(link_raw, "expiry_days", "link_codes", 14, 1, 365)
    )
    accounts_raw = _section(raw, "accounts")
    _check_keys(accounts_raw, _ACCOUNTS_KEYS, "accounts")
    accounts = AccountsConfig(
        initial_password_days=_int(accounts_raw, "initial_password_days", "accounts", 30, 1, 365)
    )
    return SferumConfig(
        admin_api_secret=secret,
        bot_localpart=bot_localpart,
        timezone=timezone,
        partner_servers=frozenset(partners),
        rules=rules,
        provisioning=provisioning,
        phone=_phone(_section(raw, "phone")),
        link_codes=link_codes,
        accounts=accounts,
        quiet_hours=_quiet_hours(_section(raw, "quiet_hours"), timezone),
        calls=_calls(_section(raw, "calls")),
    )
