"""School-issued accounts (DESIGN §5c): made for roster people, linked, with an initial password.

Synapse's ModuleApi can register a user but not set a password, so initial passwords are kept
(scrypt-hashed) in the module's table and checked by a password auth provider callback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Any

import attrs
from synapse.module_api import ModuleApi

from synapse_sferum.config import SferumConfig
from synapse_sferum.directory import age_on, guardianship_pairs
from synapse_sferum.policy import display_name_for
from synapse_sferum.rooms import slug
from synapse_sferum.roster.merge import DirectorySnapshot
from synapse_sferum.service import DirectoryService

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


@attrs.frozen
class IssuedAccount:
    person: str
    user_id: str
    password: str | None  # None: the person already had an account

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class AccountIssuer:
    def __init__(self, api: ModuleApi, config: SferumConfig, directory: DirectoryService):
        self._api = api
        self._config = config
        self._directory = directory

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
            existing = await self._directory.user_for_person(person_id)
            if existing is not None:
                issued.append(IssuedAccount(person_id, existing, None))
                continue
            person = snapshot.people[person_id]
            localpart = await free_localpart(self._api, localpart_for(person.username, person_id))
            password = new_password()
            name = display_name_for(person.real_name, person.roles)
            user_id = await self._api.register_user(localpart, displayname=name)
            await self._directory.link(person_id, user_id, hash_password(password))
            issued.append(IssuedAccount(person_id, user_id, password))
        return issued

    async def check_password(
        self, username: str, login_type: str, login_dict: dict[str, Any]
    ) -> tuple[str, None] | None:
        """Password auth provider: the initial password of a school-issued account."""
        password = login_dict.get("password")
        if not isinstance(password, str):
            return None
        user_id = (
            username if username.startswith("@") else self._api.get_qualified_user_id(username)
        )
        stored = await self._directory.password_hash(user_id)
        if stored is None or not verify_password(password, stored):
            return None
        return user_id, None
