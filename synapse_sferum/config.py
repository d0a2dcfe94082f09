"""Parses and validates the module's config into frozen attrs classes.

Every error names the key (as a dotted path under the module's `config:`) and what is allowed,
so that `sferumctl check-config` and Synapse's own start-up print the same useful message.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

import attrs

from sferum_shared.config import ConfigError
from sferum_shared.model import Role
from sferum_shared.settings import check_keys, parse_section, setting
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
    min_account_age_years: int = setting(
        6,
        "No account for anyone younger than this; birth dates come from the roster",
        low=0,
        high=18,
    )
    adult_age_years: int = setting(
        18,
        "Younger people are minors: only their classes, teachers, staff and guardians see them",
        low=1,
        high=21,
    )
    allow_encrypted_dms: bool = setting(
        False, "Whether direct chats may be end-to-end encrypted (provisioned rooms never are)"
    )


@attrs.frozen
class ProvisioningConfig:
    enabled: bool = setting(
        True,
        "Create the school's spaces and rooms from the directory and keep members, names and "
        "power levels in step with it",
    )
    reconcile_interval_seconds: int = setting(
        300, "How often to reconcile every room with the directory, in seconds", low=5, high=86400
    )
    rooms_at_once: int = setting(
        8,
        "How many rooms a reconcile works on side by side: Synapse orders the events of one "
        "room, not those of different rooms, so more rooms at once provision a school faster, "
        "at the cost of members' own requests waiting longer while it runs",
        low=1,
        high=64,
    )
    deactivate_after_hours: int = setting(
        24,
        "The account of a person deleted from the roster is shut at once and deactivated (out "
        "of every room, phone released) after this many hours, unless the person is back in "
        "the roster by then: a safety net for a botched export",
        low=0,
        high=8760,
    )


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
    default_region: str = setting(
        "RU", "Numbers typed without a country code are taken to be in this region"
    )
    code_ttl_seconds: int = setting(
        600, "An SMS code is good for this many seconds", low=60, high=3600
    )
    max_attempts: int = setting(5, "An SMS code is good for this many tries", low=1, high=20)
    max_sms_per_hour: int = setting(
        3, "At most this many SMS to one number an hour", low=1, high=100
    )
    max_sms_per_hour_total: int = setting(
        200,
        "At most this many SMS an hour to all numbers together: what anyone asking for codes "
        "can cost the school, whatever the limits per address allow",
        low=1,
        high=100_000,
    )
    sms: FileSmsConfig | HttpSmsConfig | None = None


@attrs.frozen
class ReportsConfig:
    check_interval_seconds: int = setting(
        15,
        "How often to look for messages reported by members of the school's rooms and tell the "
        "school's staff room, in seconds",
        low=5,
        high=3600,
    )


@attrs.frozen
class LinkCodesConfig:
    expiry_days: int = setting(
        14,
        "Days a linking code stays valid, unless `sferumctl link-codes --expires` says otherwise",
        low=1,
        high=365,
    )


@attrs.frozen
class AccountsConfig:
    initial_password_days: int = setting(
        30,
        "The printed password of a school-issued account (`sferumctl accounts issue`, `sheet`) "
        "stops working this many days after it was issued, and at once when the account gets "
        "a password of its own; `sferumctl accounts reset` prints a new one",
        low=1,
        high=365,
    )


@attrs.frozen
class MediaConfig:
    """Files by role (issue 15): how large one upload may be, and how much each person may
    upload over `quota_days`. Synapse's own `max_upload_size` must be at least the largest."""

    pupil_upload_mb: int = setting(25, "Largest file a pupil may upload, in MiB", low=1, high=2048)
    guardian_upload_mb: int = setting(
        50, "Largest file a guardian may upload, in MiB", low=1, high=2048
    )
    staff_upload_mb: int = setting(
        100, "Largest file a teacher or staff member may upload, in MiB", low=1, high=2048
    )
    pupil_quota_mb: int = setting(
        1024, "How much a pupil may upload within quota_days, in MiB", low=1, high=1048576
    )
    guardian_quota_mb: int = setting(
        2048,
        "How much a guardian may upload within quota_days, in MiB (their documents too)",
        low=1,
        high=1048576,
    )
    staff_quota_mb: int = setting(
        10240,
        "How much a teacher or staff member may upload within quota_days, in MiB",
        low=1,
        high=1048576,
    )
    quota_days: int = setting(
        365, "The period the quotas count uploads over, in days", low=1, high=3650
    )

    @property
    def upload_mib(self) -> dict[Role, int]:
        return self._by_role(self.pupil_upload_mb, self.guardian_upload_mb, self.staff_upload_mb)

    @property
    def quota_mib(self) -> dict[Role, int]:
        return self._by_role(self.pupil_quota_mb, self.guardian_quota_mb, self.staff_quota_mb)

    @staticmethod
    def _by_role(pupil: int, guardian: int, staff: int) -> dict[Role, int]:
        return {
            Role.STUDENT: pupil,
            Role.GUARDIAN: guardian,
            Role.TEACHER: staff,
            Role.STAFF: staff,
        }

    @property
    def largest_upload_mb(self) -> int:
        return max(self.upload_mib.values())


@attrs.frozen
class CallsConfig:
    # Where browsers reach the school's SFU (its call page is `/call`); None: no SFU, so no
    # call widget in lesson, broadcast and class news rooms.
    public_url: str | None = None


@attrs.frozen
class SupportConfig:
    # Whom people write to about the platform, and the page of help, that apps find at
    # /.well-known/matrix/support (MSC1929); None: not said. Neither: that answers 404.
    email: str | None = None
    page: str | None = None


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
    media: MediaConfig = MediaConfig()
    calls: CallsConfig = CallsConfig()
    support: SupportConfig = SupportConfig()
    reports: ReportsConfig = ReportsConfig()

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


_SMS_FILE_KEYS = {"backend", "path"}
_SMS_HTTP_KEYS = {"backend", "url", "method", "body_template", "content_type", "auth_header"}
_HTTP_METHODS = ("POST", "PUT", "GET")


def _check_keys(section: Mapping[str, Any], allowed: set[str], where: str) -> None:
    check_keys(section, allowed, where, _error)


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _error(key, f"must be a mapping, got {type(value).__name__}")
    return value


def _str(raw: Mapping[str, Any], key: str, default: str | None = None, where: str = "") -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value.strip():
        path = f"{where}.{key}" if where else key
        raise _error(path, f"must be a non-empty string, got {value!r}")
    return value


def has_valid_port(parts: SplitResult) -> bool:
    """Whether the URL's port, if any, is a number from 0 to 65535 (urllib checks lazily)."""
    try:
        parts.port  # noqa: B018
    except ValueError:
        return False
    return True


def http_url(value: object) -> str:
    """An http(s) URL with a host: where people or processes are sent. Also `sferumctl init`'s
    parser, so the command line and the module refuse the same values with the same words."""
    text = value if isinstance(value, str) else ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or not has_valid_port(parts):
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    if any(c.isspace() for c in text):
        raise ValueError(f"must be an http(s) URL without spaces, got {value!r}")
    return text


def email_address(value: object) -> str:
    """An address people can write to: one @, a dotted domain, no spaces. Whether mail arrives
    is the school's to check; this refuses what is plainly not an address (a name, a URL)."""
    text = value if isinstance(value, str) else ""
    local, _, domain = text.partition("@")
    problems = (
        (not text, "is empty"),
        (any(c.isspace() for c in text), "has spaces"),
        (text.count("@") != 1, "needs exactly one @"),
        (not local, "has nothing before the @"),
        ("." not in domain or not all(domain.split(".")), "needs a domain with a dot after the @"),
    )
    for failed, problem in problems:
        if failed:
            raise ValueError(
                f"{problem}: expected an e-mail address like admin@school.example, got {value!r}"
            )
    return text


def _checked(raw: Mapping[str, Any], key: str, where: str, check: Callable[[object], str]) -> str:
    """`check(value)` of `where.key`, its ValueError turned into an error that names the key."""
    try:
        return check(raw.get(key))
    except ValueError as e:
        raise _error(f"{where}.{key}", str(e)) from None


def _http_url(raw: Mapping[str, Any], key: str, where: str) -> str:
    _str(raw, key, where=where)
    return _checked(raw, key, where, http_url)


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
    zone = _timezone(raw, "quiet_hours.default_timezone", school_timezone)
    special = {"default_timezone": zone}
    return parse_section(QuietHoursConfig, raw, "quiet_hours", _error, special)


def _calls(raw: Mapping[str, Any]) -> CallsConfig:
    _check_keys(raw, {"public_url"}, "calls")
    if raw.get("public_url") is None:
        return CallsConfig()
    return CallsConfig(public_url=_http_url(raw, "public_url", "calls"))


def _support(raw: Mapping[str, Any]) -> SupportConfig:
    checks = {"email": email_address, "page": http_url}
    _check_keys(raw, set(checks), "support")
    given = {
        key: _checked(raw, key, "support", check)
        for key, check in checks.items()
        if raw.get(key) is not None
    }
    return SupportConfig(**given)


def _phone(raw: Mapping[str, Any]) -> PhoneConfig:
    region = raw.get("default_region", "RU")
    if not isinstance(region, str) or len(region) != 2 or not region.isalpha():
        raise _error(
            "phone.default_region", f"must be a two-letter region code like RU, got {region!r}"
        )
    special = {"default_region": region.upper(), "sms": _sms(raw.get("sms"))}
    return parse_section(PhoneConfig, raw, "phone", _error, special)


def parse_config(raw: Mapping[str, Any] | None) -> SferumConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _error("", f"must be a mapping, got {type(raw).__name__}")
    _check_keys(raw, set(attrs.fields_dict(SferumConfig)), "")

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

    return SferumConfig(
        admin_api_secret=secret,
        bot_localpart=bot_localpart,
        timezone=timezone,
        partner_servers=frozenset(partners),
        rules=parse_section(RulesConfig, _section(raw, "rules"), "rules", _error),
        provisioning=parse_section(
            ProvisioningConfig, _section(raw, "provisioning"), "provisioning", _error
        ),
        phone=_phone(_section(raw, "phone")),
        link_codes=parse_section(
            LinkCodesConfig, _section(raw, "link_codes"), "link_codes", _error
        ),
        accounts=parse_section(AccountsConfig, _section(raw, "accounts"), "accounts", _error),
        quiet_hours=_quiet_hours(_section(raw, "quiet_hours"), timezone),
        media=parse_section(MediaConfig, _section(raw, "media"), "media", _error),
        calls=_calls(_section(raw, "calls")),
        support=_support(_section(raw, "support")),
        reports=parse_section(ReportsConfig, _section(raw, "reports"), "reports", _error),
    )
