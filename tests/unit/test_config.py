import pytest

from synapse_sferum.config import SferumConfigError, parse_config

SECRET = "s" * 32


def test_defaults() -> None:
    config = parse_config({"admin_api_secret": SECRET})
    assert config.bot_localpart == "sferum"
    assert config.rules.min_account_age_years == 6
    assert config.partner_servers == frozenset()


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ({}, "admin_api_secret", "non-empty string"),
        ({"admin_api_secret": "short"}, "admin_api_secret", "at least 16"),
        ({"admin_api_secret": SECRET, "colour": 1}, "colour", "allowed keys: admin_api_secret"),
        ({"admin_api_secret": SECRET, "rules": {"min_account_age_years": 40}},
         "rules.min_account_age_years", "from 0 to 18"),
        ({"admin_api_secret": SECRET, "rules": {"allow_encrypted_dms": "yes"}},
         "rules.allow_encrypted_dms", "true or false"),
        ({"admin_api_secret": SECRET, "rules": {"typo": 1}}, "rules.typo", "allowed keys"),
        ({"admin_api_secret": SECRET, "provisioning": []}, "provisioning", "mapping"),
        ({"admin_api_secret": SECRET, "partner_servers": "b.example"}, "partner_servers", "list"),
    ],
)
def test_errors_name_key_and_allowed_values(raw: dict, key: str, fragment: str) -> None:
    with pytest.raises(SferumConfigError) as err:
        parse_config(raw)
    assert err.value.key == key
    assert f"modules[synapse_sferum].config.{key}:" in str(err.value)
    assert fragment in str(err.value)
