"""Which roster person an OpenID provider's claim names, and the mapping provider's config."""

from __future__ import annotations

from typing import Any

import pytest
from synapse.module_api.errors import ConfigError

from sferum_shared.vocabulary import Reason
from synapse_sferum.sso import (
    Match,
    SsoMappingConfig,
    SsoRefused,
    parse_mapping_config,
    person_for_phone,
    phone_account_refusal,
    roster_key,
)

BY_ID = SsoMappingConfig()
BY_PHONE = SsoMappingConfig(claim="phone_number", match=Match.PHONE)


@pytest.mark.parametrize(
    ("claim", "config", "key"),
    [
        ("g-novikov", BY_ID, "g-novikov"),
        (" g-novikov ", BY_ID, "g-novikov"),
        (1000042, BY_ID, "1000042"),
        ("+79151234505", BY_PHONE, "+79151234505"),
        ("+7 (915) 123-45-05", BY_PHONE, "+79151234505"),
        ("8 915 123 45 05", BY_PHONE, "+79151234505"),
        ("9151234505", BY_PHONE, "+79151234505"),
        ("+380441234567", BY_PHONE, "+380441234567"),
    ],
)
def test_roster_key(claim: object, config: SsoMappingConfig, key: str) -> None:
    assert roster_key(claim, config) == key


@pytest.mark.parametrize(
    ("claim", "config", "reason"),
    [
        (None, BY_ID, Reason.SSO_CLAIM_MISSING),
        ("", BY_ID, Reason.SSO_CLAIM_MISSING),
        ("  ", BY_PHONE, Reason.SSO_CLAIM_MISSING),
        (True, BY_ID, Reason.SSO_CLAIM_MISSING),
        (["g-novikov"], BY_ID, Reason.SSO_CLAIM_MISSING),
        ("not a phone", BY_PHONE, Reason.PHONE_INVALID),
        ("+7 915", BY_PHONE, Reason.PHONE_INVALID),
    ],
)
def test_roster_key_refusals(
    claim: object, config: SsoMappingConfig, reason: Reason | Reason
) -> None:
    with pytest.raises(SsoRefused) as refused:
        roster_key(claim, config)
    assert refused.value.reason is reason
    assert f"({reason.value})" in str(refused.value)


@pytest.mark.parametrize(
    ("people", "outcome"),
    [
        (["g-novikov"], "g-novikov"),
        ([], Reason.PERSON_NOT_IN_DIRECTORY),
        (["g-volkova", "g-volkov"], Reason.SSO_PHONE_AMBIGUOUS),
    ],
)
def test_person_for_phone(people: list[str], outcome: str) -> None:
    if isinstance(outcome, Reason | Reason):
        with pytest.raises(SsoRefused) as refused:
            person_for_phone(people)
        assert refused.value.reason is outcome
    else:
        assert person_for_phone(people) == outcome


@pytest.mark.parametrize(
    ("owner", "own_account", "refused"),
    [
        (None, None, False),  # a new account may take a free number
        (None, "@novikov.ivan:s", False),
        ("@novikov.ivan:s", "@novikov.ivan:s", False),  # the person's own account
        ("@volkova.anna:s", None, True),  # someone else's account has the number
        ("@volkova.anna:s", "@novikov.ivan:s", True),
    ],
)
def test_one_phone_one_account(owner: str | None, own_account: str | None, refused: bool) -> None:
    if refused:
        with pytest.raises(SsoRefused) as e:
            phone_account_refusal(owner, own_account)
        assert e.value.reason is Reason.PHONE_IN_USE
    else:
        phone_account_refusal(owner, own_account)


def test_config_defaults() -> None:
    assert parse_mapping_config(None) == SsoMappingConfig("sub", Match.PERSON_ID, "RU")
    assert parse_mapping_config({"claim": "phone_number", "match": "phone"}) == BY_PHONE
    assert parse_mapping_config({"default_region": "by"}).default_region == "BY"


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ({"claim": ""}, "claim", "non-empty string"),
        ({"claim": 5}, "claim", "non-empty string"),
        ({"match": "email"}, "match", "'person_id' or 'phone'"),
        ({"default_region": "Russia"}, "default_region", "two-letter"),
        ({"clam": "sub"}, "clam", "allowed keys: claim, default_region, match"),
    ],
)
def test_config_errors_name_key_and_allowed_values(
    raw: dict[str, Any], key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as e:
        parse_mapping_config(raw)
    assert e.value.msg.startswith(f"oidc_providers[].user_mapping_provider.config.{key}: ")
    assert fragment in e.value.msg
    assert e.value.path == (key,)
