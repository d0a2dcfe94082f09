"""Sign-in through an OpenID provider (a school diary, ЕСИА): SSO users are roster people too.

Synapse loads an OIDC `user_mapping_provider` on its own, with nothing but its config and a
ModuleApi, so the running `SferumModule` registers itself here by server name and the provider
finds it at the first sign-in. The provider maps one claim to a roster person and asks the same
rules as a registration with a linking code (`Registrar.reserve_for_sso`): the person must be in
the roster, enabled and old enough; someone who has an account signs in to it. A refusal is a
`MappingException`, which Synapse shows to the user on its SSO error page, before any account
exists.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from synapse.handlers.sso import MappingException
from synapse.module_api import ModuleApi
from synapse.module_api.errors import ConfigError

from sferum_shared.vocabulary import Reason
from synapse_sferum.policy.identity import MESSAGES
from synapse_sferum.policy.phone import PhoneError, msisdn_of_e164, parse_msisdn
from synapse_sferum.registration import RegistrationRefused
from synapse_sferum.store import identity

if TYPE_CHECKING:
    from synapse_sferum.module import SferumModule

KEY_PREFIX = "oidc_providers[].user_mapping_provider.config"

_MODULES: dict[str, SferumModule] = {}


def register_module(server_name: str, module: SferumModule) -> None:
    _MODULES[server_name] = module


def module_for(server_name: str) -> SferumModule | None:
    return _MODULES.get(server_name)


class Match(enum.StrEnum):
    """What the configured claim holds."""

    PERSON_ID = "person_id"  # the roster's sourcedId, e.g. the diary's or ЕСИА's person ID
    PHONE = "phone"  # a phone number the provider has verified


SSO_MESSAGES: dict[Reason, str] = {
    Reason.SSO_CLAIM_MISSING: "The identity provider did not say who you are",
    Reason.SSO_PHONE_AMBIGUOUS: "Several people in the school directory have this phone number",
    Reason.SSO_MODULE_NOT_LOADED: "The school platform is not running on this server",
}


class SsoRefused(Exception):
    def __init__(self, reason: Reason):
        self.reason = reason
        text = MESSAGES.get(reason) or SSO_MESSAGES[reason]
        super().__init__(f"{text} ({reason.value})")


@attrs.frozen
class SsoMappingConfig:
    claim: str = "sub"
    match: Match = Match.PERSON_ID
    # Phones without a country code are read as numbers of this region.
    default_region: str = "RU"


_KEYS = {"claim", "match", "default_region"}


def parse_mapping_config(raw: Mapping[str, Any] | None) -> SsoMappingConfig:
    """Errors name the key under `user_mapping_provider.config` and what is allowed."""
    raw = raw or {}
    for key in raw:
        if key not in _KEYS:
            raise _config_error(key, f"unknown key; allowed keys: {', '.join(sorted(_KEYS))}")
    claim = raw.get("claim", "sub")
    if not isinstance(claim, str) or not claim.strip():
        raise _config_error("claim", f"must be a non-empty string, got {claim!r}")
    match = raw.get("match", Match.PERSON_ID.value)
    if match not in {m.value for m in Match}:
        allowed = " or ".join(repr(m.value) for m in Match)
        raise _config_error("match", f"must be {allowed}, got {match!r}")
    region = raw.get("default_region", "RU")
    if not isinstance(region, str) or len(region) != 2 or not region.isalpha():
        raise _config_error("default_region", f"must be a two-letter country code, got {region!r}")
    return SsoMappingConfig(claim=claim, match=Match(match), default_region=region.upper())


def _config_error(key: str, message: str) -> ConfigError:
    return ConfigError(f"{KEY_PREFIX}.{key}: {message}", (key,))


# -- pure: which roster person a claim names -------------------------------------------------


def roster_key(claim: object, config: SsoMappingConfig) -> str:
    """The claim as the roster keeps it: a person ID as is, a phone as "+E.164"."""
    if isinstance(claim, int) and not isinstance(claim, bool):
        claim = str(claim)  # some providers send numeric IDs
    if not isinstance(claim, str) or not claim.strip():
        raise SsoRefused(Reason.SSO_CLAIM_MISSING)
    if config.match is Match.PERSON_ID:
        return claim.strip()
    try:
        return "+" + parse_msisdn(claim, "", config.default_region)
    except PhoneError:
        raise SsoRefused(Reason.PHONE_INVALID) from None


def person_for_phone(roster_people: Sequence[str]) -> str:
    """The one roster person with the phone; a shared number identifies nobody."""
    if not roster_people:
        raise SsoRefused(Reason.PERSON_NOT_IN_DIRECTORY)
    if len(roster_people) > 1:
        raise SsoRefused(Reason.SSO_PHONE_AMBIGUOUS)
    return roster_people[0]


def phone_account_refusal(phone_owner: str | None, own_account: str | None) -> None:
    """One phone, one account: a number bound to someone else's account signs nobody in."""
    if phone_owner is not None and phone_owner != own_account:
        raise SsoRefused(Reason.PHONE_IN_USE)


# -- Synapse's interface ----------------------------------------------------------------------


class SferumOidcMappingProvider:
    """`user_mapping_provider.module: synapse_sferum.SferumOidcMappingProvider`."""

    def __init__(self, config: SsoMappingConfig, module_api: ModuleApi):
        self._config = config
        self._api = module_api

    @staticmethod
    def parse_config(config: dict[str, Any]) -> SsoMappingConfig:
        return parse_mapping_config(config)

    def get_remote_user_id(self, userinfo: Mapping[str, Any]) -> str:
        return str(userinfo["sub"])

    async def map_user_attributes(
        self, userinfo: Mapping[str, Any], token: Mapping[str, Any], failures: int = 0
    ) -> dict[str, Any]:
        if failures:
            # The localpart is the person's own and was taken: by their existing account, which
            # Synapse looks up only with allow_existing_users. Another name would be a second
            # account for the same person.
            raise MappingException(
                "This person's account exists but the server cannot sign in to it "
                "(the identity provider needs allow_existing_users: true)"
            )
        module = module_for(self._api.server_name)
        try:
            if module is None:
                raise SsoRefused(Reason.SSO_MODULE_NOT_LOADED)
            person_id = await self._person(module, userinfo.get(self._config.claim))
            localpart = await module.registrar.reserve_for_sso(person_id)
        except SsoRefused as e:
            raise MappingException(f"You cannot sign in here: {e}") from e
        except RegistrationRefused as e:
            text = f"{MESSAGES[e.reason]} ({e.reason.value})"
            raise MappingException(f"You cannot sign in here: {text}") from e
        return {
            "localpart": localpart,
            "confirm_localpart": False,
            "display_name": await module.registrar.display_name(person_id),
            "picture": None,
            "emails": [],
        }

    async def _person(self, module: SferumModule, claim: object) -> str:
        key = roster_key(claim, self._config)
        if self._config.match is Match.PERSON_ID:
            return key
        directory = module.directory
        person_id = person_for_phone(
            await directory.run("sferum_sso_phone", identity.person_with_phone_txn, key)
        )
        owner = await directory.run(
            "sferum_phone_owner", identity.phone_owner_txn, msisdn_of_e164(key)
        )
        phone_account_refusal(owner, await directory.user_for_person(person_id))
        return person_id
