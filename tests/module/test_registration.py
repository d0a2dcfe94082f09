"""Registration with a linking code and an SMS-checked phone, over the mocked ModuleApi and real
SQLite: the Registrar answers Synapse's callbacks the way a registration asks them.

Synapse's part is played by rows in its own tables (the UIA session with its two completed
stages, as `compat.registrations_with_msisdn_txn` reads them) and a validated SMS challenge of
the module's, as the msisdn delegate leaves it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from sferum_shared import ManualClock
from sferum_shared.vocabulary import Reason
from synapse_sferum import compat
from synapse_sferum.invites import families_of
from synapse_sferum.policy.phone import SmsChallenge
from synapse_sferum.registration import (
    DAY_MS,
    UIA_SESSION_MS,
    Registrar,
    RegistrationRefused,
    RegistrationRefusedMany,
)
from synapse_sferum.service import DirectoryService
from synapse_sferum.store import identity
from tests.module.conftest import done, load_demo, roster_with_users, sferum_config, uid

PHONE = "79165550001"  # nobody's in the roster
OTHER_PHONE = "79165550002"
GUARDIAN_PHONE = "79031234501"  # g-volkova's roster phone; her son is p-5a-1


class Registrations:
    """A Registrar over the demo school, and Synapse's side of a registration as rows."""

    def __init__(
        self, api: mock.Mock, database: sqlite3.Connection, clock: ManualClock, **config: Any
    ):
        self.api = api
        self.database = database
        self.clock = clock
        self.on_linked = mock.Mock()
        self.config = sferum_config(**config)
        self.directory = DirectoryService(api, self.config, clock)
        self.registrar = Registrar(api, self.config, self.directory, clock, self.on_linked)
        api.check_user_exists.side_effect = lambda user_id: done(None)

    async def code_for(self, person_id: str) -> str:
        [issued], _ = await self.registrar.issue_codes([person_id], None, issued_by="test")
        return issued.code

    async def verified(self, session: str, token: str, msisdn: str) -> dict[str, Any]:
        """A UIA session that passed the code stage and the phone stage (SMS session `sid-…`);
        returns its `uia_results`, as Synapse hands them to the callbacks."""
        sid = f"sid-{session}"
        now = self.clock.ms()
        await self.directory.run(
            "test_challenge",
            identity.insert_challenge_txn,
            SmsChallenge(sid, "secret", msisdn, "hash", now, now + 600_000, 0, now),
        )
        threepid = {"medium": "msisdn", "address": msisdn, "threepid_creds": {"sid": sid}}
        results = {compat.UIA_REGISTRATION_TOKEN: token, compat.UIA_MSISDN: threepid}
        self.database.execute(
            "INSERT INTO ui_auth_sessions VALUES (?, ?, '{}', '{}', '/register', 'POST', '')",
            (session, now),
        )
        for stage, result in results.items():
            self.database.execute(
                "INSERT INTO ui_auth_sessions_credentials VALUES (?, ?, ?)",
                (session, stage, json.dumps(result)),
            )
        return results

    async def allowed(self, msisdn: str) -> bool:
        """What Synapse asks at /register before it makes the account."""
        return await self.registrar.is_3pid_allowed("msisdn", msisdn, True)

    async def register(self, uia_results: dict[str, Any]) -> str:
        """The rest of /register once the phone was allowed: the name, then the account."""
        localpart = await self.registrar.get_username_for_registration(uia_results, {})
        assert localpart is not None
        user_id = uid(localpart)
        await self.registrar.on_user_registration(user_id)
        return user_id

    def row(self, sql: str, *args: Any) -> Any:
        return self.database.execute(sql, args).fetchone()


@pytest.fixture
def reg(api: mock.Mock, database: sqlite3.Connection, clock: ManualClock) -> Registrations:
    return Registrations(api, database, clock)


async def test_a_valid_code_registers_its_person_and_links_the_account(
    reg: Registrations,
) -> None:
    await load_demo(reg.directory)
    code = await reg.code_for("g-morozova")
    uia = await reg.verified("s1", code, PHONE)
    assert await reg.allowed(PHONE)
    assert await reg.registrar.get_displayname_for_registration(uia, {}) == (
        "Екатерина Павловна Морозова"
    )
    user_id = await reg.register(uia)
    assert user_id == uid("morozova.ekaterina")
    assert await reg.directory.person_for_user(user_id) == "g-morozova"
    assert reg.row("SELECT msisdn FROM sferum_links WHERE user_id = ?", user_id) == (PHONE,)
    assert reg.row("SELECT used_by FROM sferum_link_codes WHERE code = ?", code) == (user_id,)
    # Synapse's token expires with the code; the phone check cannot serve another registration.
    [expiry] = reg.row("SELECT expiry_time FROM registration_tokens WHERE token = ?", code)
    assert expiry < reg.clock.ms()
    assert reg.row("SELECT validated_ts FROM sferum_sms_challenges WHERE sid = 'sid-s1'") == (
        None,
    )
    reg.on_linked.assert_called_once_with()


async def test_a_registration_the_module_did_not_allow_links_nothing(
    reg: Registrations,
) -> None:
    """School-issued accounts and the bot are registered without a pending link."""
    await load_demo(reg.directory)
    await reg.registrar.on_user_registration("@someone:other.server")
    reg.on_linked.assert_not_called()
    await reg.registrar.on_user_registration(uid("someone"))
    assert reg.row("SELECT COUNT(*) FROM sferum_links") == (0,)


async def _unknown(reg: Registrations) -> tuple[str, str]:
    return "NOPE-NOPE-NOPE", PHONE


async def _used(reg: Registrations) -> tuple[str, str]:
    code = await reg.code_for("g-morozova")
    await reg.register(await reg.verified("first", code, OTHER_PHONE))
    return code, PHONE


async def _expired(reg: Registrations) -> tuple[str, str]:
    code = await reg.code_for("g-morozova")
    reg.clock.advance(reg.config.link_codes.expiry_days * DAY_MS / 1000)
    return code, PHONE


async def _phone_in_use(reg: Registrations) -> tuple[str, str]:
    await reg.register(await reg.verified("first", await reg.code_for("g-volkov"), PHONE))
    return await reg.code_for("g-morozova"), PHONE


async def _guardians_phone(reg: Registrations) -> tuple[str, str]:
    return await reg.code_for("p-5a-1"), GUARDIAN_PHONE


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (_unknown, Reason.LINK_CODE_UNKNOWN),
        (_used, Reason.LINK_CODE_USED),
        (_expired, Reason.LINK_CODE_EXPIRED),
        (_phone_in_use, Reason.PHONE_IN_USE),
        (_guardians_phone, Reason.PHONE_OF_GUARDIAN),
    ],
    ids=["unknown", "used", "expired", "phone_in_use", "guardians_phone"],
)
async def test_a_refused_registration_makes_no_account_and_spends_the_phone_check(
    reg: Registrations,
    setup: Callable[[Registrations], Awaitable[tuple[str, str]]],
    reason: Reason,
) -> None:
    await load_demo(reg.directory)
    token, msisdn = await setup(reg)
    uia = await reg.verified("s2", token, msisdn)
    links = reg.row("SELECT COUNT(*) FROM sferum_links")
    assert not await reg.allowed(msisdn)
    with pytest.raises(RegistrationRefused) as refused:
        await reg.registrar.get_username_for_registration(uia, {})
    assert refused.value.reason is reason
    assert reg.row("SELECT COUNT(*) FROM sferum_pending_links") == (0,)
    assert reg.row("SELECT COUNT(*) FROM sferum_links") == links
    # The number cannot be replayed: the client must verify a phone again.
    assert reg.row("SELECT validated_ts FROM sferum_sms_challenges WHERE sid = 'sid-s2'") == (
        None,
    )


async def test_a_code_works_until_the_moment_it_expires(reg: Registrations) -> None:
    await load_demo(reg.directory)
    code = await reg.code_for("g-morozova")
    reg.clock.advance(reg.config.link_codes.expiry_days * DAY_MS / 1000 - 1)
    uia = await reg.verified("s1", code, PHONE)
    assert await reg.allowed(PHONE)
    assert await reg.register(uia) == uid("morozova.ekaterina")


@pytest.mark.parametrize(
    ("medium", "registration", "allowed"),
    [("msisdn", True, True), ("msisdn", False, False), ("email", True, False)],
)
async def test_phones_only_and_only_at_registration(
    reg: Registrations, medium: str, registration: bool, allowed: bool
) -> None:
    """With no registration to pair it with yet (requestToken), a phone is let through."""
    assert await reg.registrar.is_3pid_allowed(medium, PHONE, registration) is allowed


@pytest.mark.parametrize(
    ("person", "reason"),
    [
        ("p-5a-2", Reason.TOO_YOUNG),  # 11 years old, and the school says 12
        ("g-popova", Reason.PERSON_DISABLED),
        ("nobody", Reason.PERSON_NOT_IN_DIRECTORY),
        ("g-volkova", Reason.PERSON_HAS_ACCOUNT),
    ],
)
async def test_no_code_is_issued_for_someone_who_may_not_register(
    api: mock.Mock,
    database: sqlite3.Connection,
    clock: ManualClock,
    tmp_path: Path,
    person: str,
    reason: Reason,
) -> None:
    """Asked for by name, one refusal refuses the whole request: nothing is written."""
    reg = Registrations(api, database, clock, rules={"min_account_age_years": 12})
    roster = roster_with_users(tmp_path / "roster", {"g-popova": {"enabledUser": "false"}})
    await load_demo(reg.directory, "g-volkova", roster=roster)
    with pytest.raises(RegistrationRefusedMany) as refused:
        await reg.registrar.issue_codes(["p-5a-3", person], None, issued_by="test")
    assert [(r.person_id, r.reason) for r in refused.value.refusals] == [(person, reason)]
    assert reg.row("SELECT COUNT(*) FROM sferum_link_codes") == (0,)
    assert reg.row("SELECT COUNT(*) FROM registration_tokens") == (0,)
    issued, _ = await reg.registrar.issue_codes(["p-5a-3"], None, issued_by="test")
    assert [c.person for c in issued] == ["p-5a-3"]  # 12 years old: old enough


async def test_a_class_gets_a_code_per_family_member_without_an_account(
    reg: Registrations,
) -> None:
    await load_demo(reg.directory, "p-5a-2", "g-volkova")
    family = families_of(await reg.directory.snapshot(), "5a")
    assert family == [
        *("p-5a-1", "p-5a-2", "p-5a-3", "p-5a-4"),
        *("g-lebedeva", "g-morozova", "g-novikov", "g-volkov", "g-volkova"),
    ]
    issued, skipped = await reg.registrar.issue_codes(
        family, 3, issued_by=uid("t-1"), skip_refused=True
    )
    linked = {"p-5a-2", "g-volkova"}
    assert [c.person for c in issued] == [p for p in family if p not in linked]
    assert [(r.person_id, r.reason) for r in skipped] == [
        ("p-5a-2", Reason.PERSON_HAS_ACCOUNT),
        ("g-volkova", Reason.PERSON_HAS_ACCOUNT),
    ]
    assert len({c.code for c in issued}) == len(issued)
    assert {c.expires_ms for c in issued} == {reg.clock.ms() + 3 * DAY_MS}
    rows = reg.database.execute(
        "SELECT c.person_id, c.issued_by, t.expiry_time FROM sferum_link_codes c"
        " JOIN registration_tokens t ON t.token = c.code"
    ).fetchall()
    assert sorted(rows) == sorted((c.person, uid("t-1"), c.expires_ms) for c in issued)


async def test_a_code_claimed_by_one_registration_is_not_usable_by_another_meanwhile(
    reg: Registrations,
) -> None:
    await load_demo(reg.directory)
    code = await reg.code_for("g-morozova")
    first = await reg.verified("first", code, PHONE)
    await reg.verified("second", code, OTHER_PHONE)
    assert await reg.allowed(PHONE)
    assert not await reg.allowed(OTHER_PHONE)
    assert await reg.allowed(PHONE)  # the holder asks again: still its own
    # Synapse forgets a UIA session after 48 hours; so does the claim, if nothing came of it.
    reg.clock.advance(UIA_SESSION_MS / 1000 + 1)
    later = await reg.verified("later", code, OTHER_PHONE)
    assert await reg.allowed(OTHER_PHONE)
    assert await reg.register(later) == uid("morozova.ekaterina")
    with pytest.raises(RegistrationRefused) as refused:
        await reg.registrar.get_username_for_registration(first, {})
    assert refused.value.reason is Reason.LINK_CODE_USED
