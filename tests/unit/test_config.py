import attrs
import pytest

from sferum_shared.config import ConfigError
from sferum_shared.settings import Setting, comment, describe
from synapse_sferum.config import (
    AccountsConfig,
    LinkCodesConfig,
    PhoneConfig,
    ProvisioningConfig,
    ReportsConfig,
    RulesConfig,
    SupportConfig,
    parse_config,
)
from synapse_sferum.policy.quiet import QuietHoursConfig

SECRET = "s" * 32


def test_defaults() -> None:
    config = parse_config({"admin_api_secret": SECRET})
    assert config.bot_localpart == "sferum"
    assert config.rules.min_account_age_years == 6
    assert config.partner_servers == frozenset()
    assert config.calls.public_url is None  # no SFU: no call widgets
    assert config.support == SupportConfig()  # no contacts: /.well-known/matrix/support is 404


@pytest.mark.parametrize(
    ("raw", "school", "quiet"),
    [
        ({}, "Europe/Moscow", "Europe/Moscow"),
        ({"timezone": "Asia/Yekaterinburg"}, "Asia/Yekaterinburg", "Asia/Yekaterinburg"),
        ({"timezone": "asia/omsk"}, "Asia/Omsk", "Asia/Omsk"),  # as zoneinfo spells it
        (
            {"timezone": "Asia/Omsk", "quiet_hours": {"default_timezone": "Europe/Moscow"}},
            "Asia/Omsk",
            "Europe/Moscow",
        ),
    ],
)
def test_the_schools_time_zone(raw: dict, school: str, quiet: str) -> None:
    """The school's day is its own midnight's; quiet hours without a zone are in it too."""
    config = parse_config({"admin_api_secret": SECRET, **raw})
    assert config.timezone == school and config.zone.key == school
    assert config.quiet_hours.default_timezone == quiet


@pytest.mark.parametrize(
    ("calls", "public_url"),
    [
        ({"public_url": "https://sfu.school.example"}, "https://sfu.school.example"),
        ({"public_url": None}, None),
        (None, None),
    ],
)
def test_calls(calls: object, public_url: str | None) -> None:
    config = parse_config({"admin_api_secret": SECRET, "calls": calls})
    assert config.calls.public_url == public_url


@pytest.mark.parametrize(
    ("support", "parsed"),
    [
        (None, SupportConfig()),
        ({}, SupportConfig()),
        ({"email": "admin@school.test"}, SupportConfig(email="admin@school.test")),
        ({"page": "https://school.test/help"}, SupportConfig(page="https://school.test/help")),
        (
            {"email": "it.desk@mail.school.test", "page": "http://school.test:8080/help?lang=ru"},
            SupportConfig("it.desk@mail.school.test", "http://school.test:8080/help?lang=ru"),
        ),
        ({"email": None, "page": None}, SupportConfig()),
    ],
)
def test_support(support: object, parsed: SupportConfig) -> None:
    assert parse_config({"admin_api_secret": SECRET, "support": support}).support == parsed


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ({}, "admin_api_secret", "non-empty string"),
        ({"admin_api_secret": "short"}, "admin_api_secret", "at least 16"),
        (
            {"admin_api_secret": SECRET, "colour": 1},
            "colour",
            "allowed keys: accounts, admin_api_secret",
        ),
        (
            {"admin_api_secret": SECRET, "rules": {"min_account_age_years": 40}},
            "rules.min_account_age_years",
            "from 0 to 18",
        ),
        (
            {"admin_api_secret": SECRET, "rules": {"allow_encrypted_dms": "yes"}},
            "rules.allow_encrypted_dms",
            "true or false",
        ),
        ({"admin_api_secret": SECRET, "rules": {"typo": 1}}, "rules.typo", "allowed keys"),
        ({"admin_api_secret": SECRET, "provisioning": []}, "provisioning", "mapping"),
        ({"admin_api_secret": SECRET, "partner_servers": "b.example"}, "partner_servers", "list"),
        (
            {"admin_api_secret": SECRET, "phone": {"default_region": "RUS"}},
            "phone.default_region",
            "two-letter region",
        ),
        (
            {"admin_api_secret": SECRET, "phone": {"max_attempts": 0}},
            "phone.max_attempts",
            "from 1 to 20",
        ),
        (
            {"admin_api_secret": SECRET, "phone": {"sms": {"backend": "smtp"}}},
            "phone.sms.backend",
            "'file' or 'http'",
        ),
        (
            {"admin_api_secret": SECRET, "phone": {"sms": {"backend": "file"}}},
            "phone.sms.path",
            "non-empty string",
        ),
        (
            {"admin_api_secret": SECRET, "phone": {"sms": {"backend": "http", "url": "ftp://x"}}},
            "phone.sms.url",
            "http(s) URL",
        ),
        (
            {
                "admin_api_secret": SECRET,
                "phone": {"sms": {"backend": "http", "url": "https://x", "method": "PATCH"}},
            },
            "phone.sms.method",
            "one of POST, PUT, GET",
        ),
        (
            {
                "admin_api_secret": SECRET,
                "phone": {"sms": {"backend": "file", "path": "x", "u": 1}},
            },
            "phone.sms.u",
            "allowed keys: backend, path",
        ),
        (
            {"admin_api_secret": SECRET, "link_codes": {"expiry_days": 400}},
            "link_codes.expiry_days",
            "from 1 to 365",
        ),
        (
            {"admin_api_secret": SECRET, "accounts": {"initial_password_days": 0}},
            "accounts.initial_password_days",
            "from 1 to 365",
        ),
        (
            {"admin_api_secret": SECRET, "accounts": {"days": 3}},
            "accounts.days",
            "allowed keys: initial_password_days",
        ),
        (
            {"admin_api_secret": SECRET, "calls": {"public_url": "sfu.example:8010"}},
            "calls.public_url",
            "http(s) URL",
        ),
        (
            {"admin_api_secret": SECRET, "calls": {"public_url": ""}},
            "calls.public_url",
            "non-empty string",
        ),
        (
            {"admin_api_secret": SECRET, "calls": {"url": "https://x"}},
            "calls.url",
            "allowed keys: public_url",
        ),
        ({"admin_api_secret": SECRET, "calls": "https://x"}, "calls", "mapping"),
        (
            {"admin_api_secret": SECRET, "support": {"email": "admin"}},
            "support.email",
            "needs exactly one @",
        ),
        (
            {"admin_api_secret": SECRET, "support": {"email": "admin@@school.test"}},
            "support.email",
            "needs exactly one @",
        ),
        (
            {"admin_api_secret": SECRET, "support": {"email": "a@b@school.test"}},
            "support.email",
            "needs exactly one @",
        ),
        (
            {"admin_api_secret": SECRET, "support": {"email": "@school.test"}},
            "support.email",
            "nothing before the @",
        ),
        (
            {"admin_api_secret": SECRET, "support": {"email": "admin@localhost"}},
            "support.email",
            "needs a domain with a dot",
        ),
        (
            {"admin_api_secret": SECRET, "support": {"email": "admin@school."}},
            "support.email",
            "needs a domain with a dot",
        ),
        (
            {"admin_api_secret": SECRET, "support": {"email": "school admin@school.test"}},
            "support.email",
            "has spaces",
        ),
        (
            {"admin_api_secret": SECRET, "support": {"email": ""}},
            "support.email",
            "is empty",
        ),
        (
            {"admin_api_secret": SECRET, "support": {"page": "school.test/help"}},
            "support.page",
            "http(s) URL",
        ),
        (
            {"admin_api_secret": SECRET, "support": {"page": "ftp://school.test/help"}},
            "support.page",
            "http(s) URL",
        ),
        (
            {"admin_api_secret": SECRET, "support": {"page": "https://"}},
            "support.page",
            "http(s) URL",
        ),
        (
            {"admin_api_secret": SECRET, "support": {"page": "https://school.test:port/"}},
            "support.page",
            "http(s) URL",
        ),
        (
            {"admin_api_secret": SECRET, "support": {"page": "https://school.test/our help"}},
            "support.page",
            "without spaces",
        ),
        ({"admin_api_secret": SECRET, "support": {"email": 3}}, "support.email", "got 3"),
        (
            {"admin_api_secret": SECRET, "support": {"phone": "+7"}},
            "support.phone",
            "allowed keys: email, page",
        ),
        ({"admin_api_secret": SECRET, "support": "admin@school.test"}, "support", "mapping"),
        ({"admin_api_secret": SECRET, "timezone": "Moscow"}, "timezone", "IANA name"),
        (
            {"admin_api_secret": SECRET, "quiet_hours": {"default_timezone": 3}},
            "quiet_hours.default_timezone",
            "not a known time zone",
        ),
    ],
)
def test_errors_name_key_and_allowed_values(raw: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert err.value.key == key
    assert f"modules[synapse_sferum].config.{key}:" in str(err.value)
    assert fragment in str(err.value)


SECTIONS = {
    "rules": RulesConfig,
    "provisioning": ProvisioningConfig,
    "phone": PhoneConfig,
    "link_codes": LinkCodesConfig,
    "accounts": AccountsConfig,
    "quiet_hours": QuietHoursConfig,
    "reports": ReportsConfig,
}
RANGED = [
    (section, field.name, describe(cls, field.name))
    for section, cls in SECTIONS.items()
    for field in attrs.fields(cls)
    if isinstance(field.default, int)
    and not isinstance(field.default, bool)
]


@pytest.mark.parametrize(("section", "key", "declared"), RANGED, ids=lambda v: str(v)[:30])
def test_ranges_come_from_the_declarations(section: str, key: str, declared: Setting) -> None:
    """A key's range is written once, beside its default; parsing and its message follow."""
    assert declared.low is not None and declared.high is not None
    for value in (declared.low, declared.high):
        parsed = parse_config({"admin_api_secret": SECRET, section: {key: value}})
        assert getattr(getattr(parsed, section), key) == value
    for value in (declared.low - 1, declared.high + 1):
        with pytest.raises(ConfigError) as err:
            parse_config({"admin_api_secret": SECRET, section: {key: value}})
        assert err.value.key == f"{section}.{key}"
        assert f"from {declared.low} to {declared.high}" in str(err.value)


@pytest.mark.parametrize("section", list(SECTIONS))
def test_every_plain_key_has_its_meaning_and_a_default(section: str) -> None:
    cls = SECTIONS[section]
    for field in attrs.fields(cls):
        if isinstance(field.default, bool | int) and not isinstance(field.default, str):
            assert describe(cls, field.name).doc
            assert comment(cls, field.name, 8).startswith("        # ")
    assert parse_config({"admin_api_secret": SECRET, section: {}}) == parse_config(
        {"admin_api_secret": SECRET}
    )
