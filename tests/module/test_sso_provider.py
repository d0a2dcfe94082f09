"""Sign-in through an OpenID provider, over the mocked ModuleApi and real SQLite: the mapping
provider finds the running module by server name, maps the claim to a roster person and asks
the registrar, as Synapse calls it at an SSO sign-in (the pure parts: tests/unit)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from synapse.handlers.sso import MappingException

from sferum_shared import ManualClock
from sferum_shared.vocabulary import Reason
from synapse_sferum.module import SferumModule
from synapse_sferum.sso import SferumOidcMappingProvider, parse_mapping_config
from synapse_sferum.store import identity
from tests.module.conftest import done, load_demo, roster_with_users, sferum_config, uid

BY_ID = {"claim": "sub", "match": "person_id"}
BY_PHONE = {"claim": "phone_number", "match": "phone"}
VOLKOVA_PHONE = "+79031234501"  # g-volkova's in the roster
KOZLOVA_PHONE = "+79151234506"  # g-kozlova's, and here g-kozlov's too


class Sso:
    """The module with the demo school (g-popova disabled, the Kozlovs sharing a phone, pupils
    under 12 too young), and a provider per mapping config."""

    def __init__(self, module: SferumModule, api: mock.Mock, database: sqlite3.Connection):
        self.module = module
        self.api = api
        self.database = database
        api.check_user_exists.side_effect = lambda user_id: done(None)

    async def sign_in(self, config: dict[str, str], **userinfo: Any) -> dict[str, Any]:
        provider = SferumOidcMappingProvider(parse_mapping_config(config), self.api)
        return await provider.map_user_attributes(userinfo, {})

    async def link(self, person_id: str, localpart: str, msisdn: str | None = None) -> None:
        """An account registered earlier, with the phone it was verified with."""
        directory = self.module.directory
        now = self.api.get_current_time_msec()
        await directory.run(
            "test_link", identity.link_new_account_txn, person_id, uid(localpart), msisdn, now
        )
        await directory.forget_cached([uid(localpart)])

    def pending(self) -> list[Any]:
        return self.database.execute(
            "SELECT localpart, person_id, code FROM sferum_pending_links"
        ).fetchall()


@pytest.fixture
async def sso(
    api: mock.Mock, database: sqlite3.Connection, clock: ManualClock, tmp_path: Path
) -> Sso:
    module = SferumModule(sferum_config(rules={"min_account_age_years": 12}), api)
    roster = roster_with_users(
        tmp_path / "roster",
        {"g-popova": {"enabledUser": "false"}, "g-kozlov": {"phone": KOZLOVA_PHONE}},
    )
    await load_demo(module.directory, roster=roster)
    return Sso(module, api, database)


@pytest.mark.parametrize(
    ("config", "userinfo", "person", "localpart", "name"),
    [
        (BY_ID, {"sub": "g-novikov"}, "g-novikov", "novikov.ivan", "Иван Александрович Новиков"),
        (BY_ID, {"sub": " p-5a-3 "}, "p-5a-3", "lebedev.maksim", "Максим Андреевич Лебедев"),
        (
            BY_PHONE,
            {"phone_number": "+7 926 123-45-03"},
            "g-morozova",
            "morozova.ekaterina",
            "Екатерина Павловна Морозова",
        ),
        (
            BY_PHONE,
            {"phone_number": "8 (926) 123-45-03"},  # without the country code: a Russian number
            "g-morozova",
            "morozova.ekaterina",
            "Екатерина Павловна Морозова",
        ),
    ],
)
async def test_a_roster_person_gets_a_new_account_linked_to_them(
    sso: Sso,
    config: dict[str, str],
    userinfo: dict[str, str],
    person: str,
    localpart: str,
    name: str,
) -> None:
    mapped = await sso.sign_in(config, **userinfo)
    assert mapped == {
        "localpart": localpart,
        "confirm_localpart": False,
        "display_name": name,
        "picture": None,
        "emails": [],
    }
    assert sso.pending() == [(localpart, person, None)]
    # Synapse makes the account; the module links it.
    await sso.module.registrar.on_user_registration(uid(localpart))
    assert await sso.module.directory.person_for_user(uid(localpart)) == person
    assert sso.pending() == []


@pytest.mark.parametrize(
    ("config", "userinfo"),
    [(BY_ID, {"sub": "g-volkova"}), (BY_PHONE, {"phone_number": VOLKOVA_PHONE})],
)
async def test_someone_with_an_account_signs_in_to_it(
    sso: Sso, config: dict[str, str], userinfo: dict[str, str]
) -> None:
    await sso.link("g-volkova", "anna", VOLKOVA_PHONE[1:])
    mapped = await sso.sign_in(config, **userinfo)
    assert mapped["localpart"] == "anna"
    assert sso.pending() == []


@pytest.mark.parametrize(
    ("config", "userinfo", "reason"),
    [
        (BY_ID, {}, Reason.SSO_CLAIM_MISSING),
        (BY_ID, {"sub": ""}, Reason.SSO_CLAIM_MISSING),
        (BY_PHONE, {"sub": "g-morozova"}, Reason.SSO_CLAIM_MISSING),
        (BY_PHONE, {"phone_number": "+7 926"}, Reason.PHONE_INVALID),
        (BY_ID, {"sub": "nobody"}, Reason.PERSON_NOT_IN_DIRECTORY),
        (BY_PHONE, {"phone_number": "+7 916 555-00-01"}, Reason.PERSON_NOT_IN_DIRECTORY),
        (BY_PHONE, {"phone_number": KOZLOVA_PHONE}, Reason.SSO_PHONE_AMBIGUOUS),
        (BY_ID, {"sub": "p-5a-2"}, Reason.TOO_YOUNG),  # 11 years old
        (BY_ID, {"sub": "g-popova"}, Reason.PERSON_DISABLED),
        # g-volkov's account was verified with his wife's phone: it signs her in nowhere.
        (BY_PHONE, {"phone_number": VOLKOVA_PHONE}, Reason.PHONE_IN_USE),
    ],
)
async def test_refusals_name_their_reason_and_leave_nothing_pending(
    sso: Sso, config: dict[str, str], userinfo: dict[str, str], reason: Reason
) -> None:
    await sso.link("g-volkov", "volkov.dmitry", VOLKOVA_PHONE[1:])
    with pytest.raises(MappingException) as refused:
        await sso.sign_in(config, **userinfo)
    assert str(refused.value).startswith("You cannot sign in here: ")
    assert f"({reason.value})" in str(refused.value)
    assert sso.pending() == []


async def test_a_disabled_person_with_an_account_is_refused(sso: Sso) -> None:
    await sso.link("g-popova", "popova.yulia")
    with pytest.raises(MappingException, match=Reason.PERSON_DISABLED.value):
        await sso.sign_in(BY_ID, sub="g-popova")


async def test_without_the_module_on_this_server_nobody_signs_in(sso: Sso) -> None:
    elsewhere = mock.Mock(server_name="elsewhere.test")
    provider = SferumOidcMappingProvider(parse_mapping_config(BY_ID), elsewhere)
    with pytest.raises(MappingException, match=Reason.SSO_MODULE_NOT_LOADED.value):
        await provider.map_user_attributes({"sub": "g-novikov"}, {})


async def test_a_taken_localpart_is_not_swapped_for_another(sso: Sso) -> None:
    """Synapse asks again with `failures` when the localpart is taken: another name would be a
    second account for the same person."""
    provider = SferumOidcMappingProvider(parse_mapping_config(BY_ID), sso.api)
    with pytest.raises(MappingException, match="allow_existing_users"):
        await provider.map_user_attributes({"sub": "g-novikov"}, {}, failures=1)
    assert sso.pending() == []
