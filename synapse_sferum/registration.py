"""Registration of verified accounts (docs/identity.md): linking codes, a phone checked by SMS.

Synapse runs the standard flow (`m.login.registration_token` then `m.login.msisdn`); this glue
answers its callbacks with the pure rules of `policy.identity`, so a refused registration
creates no account and uses up no code:

* `is_3pid_allowed` refuses the phone at /register, before any account exists, when the code it
  was verified with (found through compat) names a person who may not have it;
* `get_username_for_registration` re-checks the exact pair, names the account after the
  person and leaves a pending link; `on_user_registration` turns that into the link and uses
  the code up, in one transaction that also expires Synapse's token.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

import attrs
from synapse.module_api import ModuleApi

from sferum_shared import Clock
from sferum_shared.adminapi import IssuedCode
from sferum_shared.vocabulary import Reason
from synapse_sferum import compat
from synapse_sferum.accounts import free_localpart, localpart_for
from synapse_sferum.config import SferumConfig
from synapse_sferum.policy.identity import (
    MESSAGES,
    Applicant,
    LinkCode,
    new_account_refusal,
    registration_refusal,
)
from synapse_sferum.policy.names import display_name_for
from synapse_sferum.service import DirectoryService
from synapse_sferum.store import identity
from synapse_sferum.store.identity import LinkConflict, PendingLink

logger = logging.getLogger(__name__)

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are read off paper
DAY_MS = 24 * 60 * 60 * 1000
# Synapse forgets UIA sessions after 48 h; a registration older than that cannot complete.
UIA_SESSION_MS = 48 * 60 * 60 * 1000
PENDING_LINK_MS = 10 * 60 * 1000


def new_link_code() -> str:
    """12 characters in three groups, e.g. "K7QM-4TXP-9RWA" (60 bits)."""
    chars = "".join(secrets.choice(CODE_ALPHABET) for _ in range(12))
    return "-".join(chars[i : i + 4] for i in range(0, 12, 4))


class RegistrationRefused(Exception):
    def __init__(self, person_id: str, reason: Reason):
        self.person_id = person_id
        self.reason = reason
        super().__init__(f"person '{person_id}': {MESSAGES[reason]} ({reason.value})")


class Registrar:
    def __init__(
        self,
        api: ModuleApi,
        config: SferumConfig,
        directory: DirectoryService,
        clock: Clock,
        on_linked: Callable[[], object],
    ):
        self._api = api
        self._config = config
        self._directory = directory
        self._clock = clock
        self._on_linked = on_linked
        self._max_attempts = config.phone.max_attempts

    def register(self) -> None:
        self._api.register_password_auth_provider_callbacks(
            is_3pid_allowed=self.is_3pid_allowed,
            get_username_for_registration=self.get_username_for_registration,
            get_displayname_for_registration=self.get_displayname_for_registration,
        )
        self._api.register_account_validity_callbacks(
            on_user_registration=self.on_user_registration
        )

    async def applicant(self, person_id: str) -> Applicant:
        return await self._directory.run("sferum_applicant", identity.applicant_txn, person_id)

    def _min_age(self) -> int:
        return self._config.rules.min_account_age_years

    # -- linking codes (admin API) ---------------------------------------------------------

    async def issue_codes(
        self,
        person_ids: list[str],
        expiry_days: int | None,
        *,
        issued_by: str,
        skip_refused: bool = False,
    ) -> tuple[list[IssuedCode], list[RegistrationRefused]]:
        """One new code per person. Someone who may not register refuses the whole request,
        or, with `skip_refused` (a whole class), is left out and reported. `issued_by` (the
        admin API, or a teacher's user ID) is kept with every code and logged."""
        refusals = []
        for person_id in person_ids:
            refusal = new_account_refusal(
                await self.applicant(person_id), self._directory.today(), self._min_age()
            )
            if refusal is not None:
                refusals.append(RegistrationRefused(person_id, refusal))
        if refusals and not skip_refused:
            raise RegistrationRefusedMany(refusals)
        refused = {r.person_id for r in refusals}
        days = expiry_days or self._config.link_codes.expiry_days
        now = self._clock.ms()
        codes = [
            LinkCode(new_link_code(), p, now + days * DAY_MS)
            for p in person_ids
            if p not in refused
        ]
        await self._directory.run("sferum_issue_codes", _insert_codes_txn, codes, now, issued_by)
        if codes:
            logger.info(
                "Linking codes issued by %s for %s",
                issued_by,
                ", ".join(code.person_id for code in codes),
            )
        issued = []
        for code in codes:
            person = await self._directory.run(
                "sferum_person", identity.person_txn, code.person_id
            )
            name = person.real_name if person else code.person_id
            issued.append(IssuedCode(code.person_id, name, code.code, code.expires_ms))
        return issued, refusals

    # -- Synapse's registration callbacks --------------------------------------------------

    async def _refusal(
        self, token: str, msisdn: str
    ) -> tuple[Reason | None, LinkCode | None]:
        code = await self._directory.run("sferum_link_code", identity.link_code_txn, token)
        if code is None:
            return Reason.LINK_CODE_UNKNOWN, None
        applicant = await self.applicant(code.person_id)
        owner = await self._directory.run("sferum_phone_owner", identity.phone_owner_txn, msisdn)
        refusal = registration_refusal(
            applicant,
            code,
            msisdn,
            owner,
            self._directory.today(),
            self._clock.ms(),
            self._min_age(),
        )
        return refusal, code

    async def is_3pid_allowed(self, medium: str, address: str, registration: bool) -> bool:
        """Phones only, only at registration (users cannot add or swap them afterwards)."""
        try:
            if medium != "msisdn" or not registration:
                return False
            since = self._clock.ms() - UIA_SESSION_MS
            pairs = await self._directory.run(
                "sferum_uia_pairs", compat.registrations_with_msisdn_txn, address, since
            )
            live = [(sid, token) for sid, token in pairs if await self._challenge_live(sid)]
            if not live:
                # /register/msisdn/requestToken: nothing to pair the number with yet.
                return True
            allowed = False
            for sid, token in live:
                refusal, _ = await self._refusal(token, address)
                if refusal is None:
                    # Two registrations with one code at once: the first to get here has it;
                    # the other is refused now (a 403) rather than making a second account.
                    now = self._clock.ms()
                    claimed = await self._directory.run_exclusive(
                        "sferum_claim_code",
                        identity.claim_code_txn,
                        token,
                        sid,
                        now,
                        now - UIA_SESSION_MS,
                    )
                    if claimed:
                        allowed = True
                    else:
                        logger.info("Code %s… is taken by another registration", token[:4])
                else:
                    logger.info("Refusing phone for code %s…: %s", token[:4], refusal.value)
                    await self._directory.run(
                        "sferum_spend_challenge",
                        identity.spend_challenge_txn,
                        sid,
                        self._max_attempts,
                    )
            return allowed
        except Exception:
            logger.exception("synapse_sferum: is_3pid_allowed failed; refusing")
            return False

    async def _challenge_live(self, sid: str) -> bool:
        challenge = await self._directory.run("sferum_challenge", identity.challenge_txn, sid)
        return challenge is not None and challenge.validated_ms is not None

    async def get_username_for_registration(
        self, uia_results: dict[str, Any], params: dict[str, Any]
    ) -> str | None:
        """The person's own localpart; a refusal here (it should have come earlier) is a 500."""
        token = uia_results.get(compat.UIA_REGISTRATION_TOKEN)
        threepid = uia_results.get(compat.UIA_MSISDN)
        if not isinstance(token, str) or not isinstance(threepid, dict):
            raise RegistrationRefused("?", Reason.LINK_CODE_UNKNOWN)
        msisdn = str(threepid["address"])
        refusal, code = await self._refusal(token, msisdn)
        if refusal is not None or code is None:
            raise RegistrationRefused(
                code.person_id if code else "?", refusal or Reason.LINK_CODE_UNKNOWN
            )
        sid = threepid.get("threepid_creds", {}).get("sid")
        return await self._reserve(PendingLink("", code.person_id, code.code, msisdn, sid))

    async def get_displayname_for_registration(
        self, uia_results: dict[str, Any], params: dict[str, Any]
    ) -> str | None:
        token = uia_results.get(compat.UIA_REGISTRATION_TOKEN)
        if not isinstance(token, str):
            return None
        code = await self._directory.run("sferum_link_code", identity.link_code_txn, token)
        return await self.display_name(code.person_id) if code else None

    async def display_name(self, person_id: str) -> str | None:
        person = await self._directory.run("sferum_person", identity.person_txn, person_id)
        return display_name_for(person.real_name, person.roles) if person else None

    async def reserve_for_sso(self, person_id: str) -> str:
        """The localpart an SSO sign-in gets: the person's account, or a new one to be linked."""
        applicant = await self.applicant(person_id)
        existing = await self._directory.user_for_person(person_id)
        if existing is not None and applicant.in_directory and applicant.enabled:
            return existing.split(":", 1)[0].removeprefix("@")
        refusal = new_account_refusal(applicant, self._directory.today(), self._min_age())
        if refusal is not None:
            raise RegistrationRefused(person_id, refusal)
        return await self._reserve(PendingLink("", person_id))

    async def _reserve(self, pending: PendingLink) -> str:
        person = await self._directory.run("sferum_person", identity.person_txn, pending.person_id)
        assert person is not None  # checked by the rules just before
        localpart = await free_localpart(
            self._api, localpart_for(person.username, person.sourced_id)
        )
        await self._directory.run(
            "sferum_pending_link",
            identity.put_pending_link_txn,
            attrs.evolve(pending, localpart=localpart),
            self._clock.ms(),
        )
        return localpart

    async def on_user_registration(self, user_id: str) -> None:
        """Links the new account to its person, if the module allowed this registration."""
        if not self._api.is_mine(user_id):
            return
        localpart = user_id.split(":", 1)[0].removeprefix("@")
        now = self._clock.ms()
        try:
            await self._directory.run(
                "sferum_link_registered",
                _link_registered_txn,
                localpart,
                user_id,
                now,
                self._max_attempts,
            )
        except LinkConflict as e:
            # The account stays unlinked, which the rules treat as a stranger: it can do nothing.
            logger.error("synapse_sferum: %s was registered but not linked: %s", user_id, e)
            return
        await self._directory.forget_cached([user_id])
        self._on_linked()


class RegistrationRefusedMany(Exception):
    def __init__(self, refusals: list[RegistrationRefused]):
        self.refusals = refusals
        super().__init__("; ".join(str(r) for r in refusals))


def _insert_codes_txn(txn: Any, codes: list[LinkCode], now_ms: int, issued_by: str) -> None:
    identity.insert_codes_txn(txn, codes, now_ms, issued_by)
    for code in codes:
        compat.create_registration_token_txn(txn, code.code, code.expires_ms)


def _link_registered_txn(
    txn: Any, localpart: str, user_id: str, now_ms: int, max_attempts: int
) -> None:
    pending = identity.take_pending_link_txn(txn, localpart, now_ms - PENDING_LINK_MS)
    if pending is None:
        return  # not a registration of ours (school-issued accounts link themselves)
    if pending.code is None:
        identity.link_new_account_txn(txn, pending.person_id, user_id, None, now_ms)
        return
    identity.link_with_code_txn(
        txn, pending.code, pending.person_id, user_id, pending.msisdn, now_ms
    )
    compat.retire_registration_token_txn(txn, pending.code, now_ms)
    if pending.sid:
        identity.spend_challenge_txn(txn, pending.sid, max_attempts)
