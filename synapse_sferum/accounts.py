"""School-issued accounts (docs/identity.md): made for roster people, linked, with an initial
password.

Synapse's ModuleApi can register a user but not set a password, so initial passwords (the
printed cards) are kept scrypt-hashed in the module's table and checked by a password auth
provider callback, for as long as `policy.cards` says a card still opens its account.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from typing import Any

from synapse.module_api import ModuleApi

from sferum_shared import Clock
from sferum_shared.adminapi import IssuedAccount
from sferum_shared.model import Role
from sferum_shared.rooms import slug
from synapse_sferum import compat
from synapse_sferum.config import SferumConfig
from synapse_sferum.directory import age_on, guardianship_pairs
from synapse_sferum.policy import display_name_for
from synapse_sferum.policy.cards import Card, card_void
from synapse_sferum.roster.merge import DirectorySnapshot
from synapse_sferum.service import DirectoryService
from synapse_sferum.store import accounts

logger = logging.getLogger(__name__)
DAY_MS = 24 * 60 * 60 * 1000

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_LOCALPART_UNSAFE = re.compile(r"[^a-z0-9._=-]+")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt + digest).decode()


def verify_password(password: str, stored: str) -> bool:
    scheme, _, encoded = stored.partition("$")
    if scheme != "scrypt":
        return False
    raw = base64.b64decode(encoded)
    salt, digest = raw[:16], raw[16:]
    candidate = hashlib.scrypt(password.encode(), salt=salt, dklen=len(digest), **_SCRYPT)
    return hmac.compare_digest(candidate, digest)


def new_password() -> str:
    """12 characters that survive being read off paper: no 0/O, 1/l/I."""
    alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(12))


def localpart_for(username: str, sourced_id: str) -> str:
    base = _LOCALPART_UNSAFE.sub("", username.lower()).strip("._=-")
    return base or f"p-{slug(sourced_id)}"


async def free_localpart(api: ModuleApi, wanted: str) -> str:
    """`wanted`, or `wanted2`, `wanted3`, … if taken (namesakes share a roster username)."""
    candidate, n = wanted, 1
    while await api.check_user_exists(api.get_qualified_user_id(candidate)):
        n += 1
        candidate = f"{wanted}{n}"
    return candidate


class AccountRequestError(ValueError):
    """The request names people who cannot get an account; nothing was created."""


def card_facts(snapshot: DirectorySnapshot, person_id: str) -> dict[str, Any]:
    """The name, class titles and staff flag a card prints, from the directory."""
    person = snapshot.people.get(person_id)
    if person is None:
        return {}
    own = {e.class_id for e in snapshot.enrollments.values() if e.person_id == person_id}
    children = {
        pupil for guardian, pupil in guardianship_pairs(snapshot.people) if guardian == person_id
    }
    of_children = {e.class_id for e in snapshot.enrollments.values() if e.person_id in children}
    titles = sorted(
        snapshot.classes[c].title for c in (own or of_children) if c in snapshot.classes
    )
    return {
        "name": person.real_name,
        "classes": tuple(titles),
        "staff": bool(person.roles & {Role.TEACHER, Role.STAFF}),
    }


class AccountIssuer:
    def __init__(
        self, api: ModuleApi, config: SferumConfig, directory: DirectoryService, clock: Clock
    ):
        self._api = api
        self._config = config
        self._directory = directory
        self._clock = clock

    def register(self) -> None:
        self._api.register_password_auth_provider_callbacks(
            auth_checkers={("m.login.password", ("password",)): self.check_password}
        )
        self._api.register_third_party_rules_callbacks(
            on_user_deactivation_status_changed=self.on_deactivation_status_changed
        )

    def people_of_class(self, snapshot: DirectorySnapshot, class_id: str) -> list[str]:
        if class_id not in snapshot.classes:
            raise AccountRequestError(f"class '{class_id}' is not in the directory")
        return sorted(e.person_id for e in snapshot.enrollments.values() if e.class_id == class_id)

    def class_and_families(self, snapshot: DirectorySnapshot, class_id: str) -> list[str]:
        """Everyone enrolled in the class and the guardians of its pupils."""
        members = self.people_of_class(snapshot, class_id)
        guardians = {
            guardian for guardian, pupil in guardianship_pairs(snapshot.people) if pupil in members
        }
        return members + sorted(guardians - set(members))

    def check_people(self, snapshot: DirectorySnapshot, person_ids: list[str]) -> None:
        """Refuses the whole request if any person cannot have an account."""
        problems = []
        today = self._directory.today()
        for person_id in person_ids:
            person = snapshot.people.get(person_id)
            if person is None:
                problems.append(f"person '{person_id}' is not in the directory")
                continue
            if not person.enabled:
                problems.append(f"person '{person_id}' is disabled in the roster")
            demographics = snapshot.demographics.get(person_id)
            birth = demographics.birth_date if demographics else None
            minimum = self._config.rules.min_account_age_years
            if birth is not None and age_on(birth, today) < minimum:
                problems.append(f"person '{person_id}' is under {minimum} years old")
        if problems:
            raise AccountRequestError("; ".join(problems))

    async def issue(
        self, snapshot: DirectorySnapshot, person_ids: list[str]
    ) -> list[IssuedAccount]:
        self.check_people(snapshot, person_ids)
        issued = []
        for person_id in person_ids:
            facts = card_facts(snapshot, person_id)
            existing = await self._directory.user_for_person(person_id)
            if existing is not None:
                issued.append(IssuedAccount(person_id, existing, None, **facts))
                continue
            person = snapshot.people[person_id]
            localpart = await free_localpart(self._api, localpart_for(person.username, person_id))
            password = new_password()
            name = display_name_for(person.real_name, person.roles)
            user_id = await self._api.register_user(localpart, displayname=name)
            await self._directory.link(person_id, user_id, hash_password(password))
            issued.append(IssuedAccount(person_id, user_id, password, **facts))
        return issued

    async def check_password(
        self, username: str, login_type: str, login_dict: dict[str, Any]
    ) -> tuple[str, None] | None:
        """Password auth provider: the printed card of a school-issued account, while it is
        good. A void card is forgotten, so it never opens the account again."""
        password = login_dict.get("password")
        if not isinstance(password, str):
            return None
        user_id = (
            username if username.startswith("@") else self._api.get_qualified_user_id(username)
        )
        card, has_own_password = await self._directory.run(
            "sferum_card", _card_and_own_password_txn, user_id
        )
        if card is None:
            return None
        void = card_void(
            card,
            now_ms=self._clock.ms(),
            lifetime_ms=self._config.accounts.initial_password_days * DAY_MS,
            has_own_password=has_own_password,
        )
        if void is not None:
            logger.info("synapse_sferum: the card of %s no longer works: %s", user_id, void)
            await self._directory.run("sferum_forget_card", accounts.forget_card_txn, user_id)
            return None
        if not verify_password(password, card.password_hash):
            return None
        return user_id, None

    async def on_deactivation_status_changed(
        self, user_id: str, deactivated: bool, by_admin: bool
    ) -> None:
        """A deactivated account's card is void for good, also if the account comes back."""
        if deactivated:
            await self._directory.run("sferum_forget_card", accounts.forget_card_txn, user_id)

    async def reset(
        self, snapshot: DirectorySnapshot, person_ids: list[str]
    ) -> list[IssuedAccount]:
        """A new card for each person's account, which is taken back first: its own password
        is cleared and every session signed out (the card may have been stolen, the password
        guessed). Refuses the whole request if anyone named has no account to reset."""
        users = {p: await self._directory.user_for_person(p) for p in person_ids}
        problems = [
            f"person '{p}' has no account (issue one with `accounts issue`)"
            for p, user_id in users.items()
            if user_id is None
        ]
        problems += [
            f"person '{p}' is not in the directory, or disabled there"
            for p in person_ids
            if p not in snapshot.people or not snapshot.people[p].enabled
        ]
        if problems:
            raise AccountRequestError("; ".join(problems))
        reset = []
        for person_id, user_id in users.items():
            assert user_id is not None
            await compat.take_back_account(self._api, user_id)
            password = new_password()
            await self._directory.run(
                "sferum_put_card",
                accounts.put_card_txn,
                user_id,
                hash_password(password),
                self._clock.ms(),
            )
            logger.info("synapse_sferum: new card for %s (%s)", person_id, user_id)
            reset.append(
                IssuedAccount(person_id, user_id, password, **card_facts(snapshot, person_id))
            )
        return reset


def _card_and_own_password_txn(txn: Any, user_id: str) -> tuple[Card | None, bool]:
    return accounts.card_txn(txn, user_id), compat.has_own_password_txn(txn, user_id)
