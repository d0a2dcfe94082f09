"""Who may get an account, with which linking code and which phone (DESIGN §5).

Pure functions over facts the glue gathers from the directory and the module's tables, so every
flow (linking code, SSO, school-issued accounts, the admin API) asks the same questions.
"""

from __future__ import annotations

import enum
from datetime import date

import attrs

from synapse_sferum.directory import age_on


class IdentityReason(enum.StrEnum):
    """Why an account, a code or a phone was refused. The values are API."""

    NOT_IN_DIRECTORY = "ru.sferum.person_not_in_directory"
    PERSON_DISABLED = "ru.sferum.person_disabled"
    TOO_YOUNG = "ru.sferum.too_young"
    HAS_ACCOUNT = "ru.sferum.person_has_account"
    CODE_UNKNOWN = "ru.sferum.link_code_unknown"
    CODE_USED = "ru.sferum.link_code_used"
    CODE_EXPIRED = "ru.sferum.link_code_expired"
    PHONE_INVALID = "ru.sferum.phone_invalid"
    PHONE_IN_USE = "ru.sferum.phone_in_use"
    GUARDIAN_PHONE = "ru.sferum.phone_of_guardian"


MESSAGES: dict[IdentityReason, str] = {
    IdentityReason.NOT_IN_DIRECTORY: "This person is not in the school directory",
    IdentityReason.PERSON_DISABLED: "This person's account is disabled in the school roster",
    IdentityReason.TOO_YOUNG: "Children under the minimum age cannot have an account",
    IdentityReason.HAS_ACCOUNT: "This person already has an account",
    IdentityReason.CODE_UNKNOWN: "This linking code does not exist",
    IdentityReason.CODE_USED: "This linking code has already been used",
    IdentityReason.CODE_EXPIRED: "This linking code has expired",
    IdentityReason.PHONE_INVALID: "This is not a valid phone number",
    IdentityReason.PHONE_IN_USE: "This phone number already belongs to an account",
    IdentityReason.GUARDIAN_PHONE: "A pupil's account cannot use a parent's phone number",
}


@attrs.frozen
class Applicant:
    """What the rules know about a roster person who asks for an account."""

    person_id: str
    in_directory: bool
    enabled: bool = True
    is_student: bool = False
    birth_date: date | None = None
    has_account: bool = False
    # The guardians' numbers (E.164 digits without "+"): their roster phones and account phones.
    guardian_msisdns: frozenset[str] = frozenset()


@attrs.frozen
class LinkCode:
    code: str
    person_id: str
    expires_ms: int
    used_by: str | None = None


def person_refusal(applicant: Applicant, today: date, min_age: int) -> IdentityReason | None:
    """Whether this person may have an account at all (every flow asks this first)."""
    if not applicant.in_directory:
        return IdentityReason.NOT_IN_DIRECTORY
    if not applicant.enabled:
        return IdentityReason.PERSON_DISABLED
    if applicant.birth_date is not None and age_on(applicant.birth_date, today) < min_age:
        return IdentityReason.TOO_YOUNG
    return None


def new_account_refusal(applicant: Applicant, today: date, min_age: int) -> IdentityReason | None:
    """A new account for the person: allowed, and the person has none yet."""
    refusal = person_refusal(applicant, today, min_age)
    if refusal is None and applicant.has_account:
        return IdentityReason.HAS_ACCOUNT
    return refusal


def code_refusal(code: LinkCode | None, now_ms: int) -> IdentityReason | None:
    if code is None:
        return IdentityReason.CODE_UNKNOWN
    if code.used_by is not None:
        return IdentityReason.CODE_USED
    if now_ms >= code.expires_ms:
        return IdentityReason.CODE_EXPIRED
    return None


def phone_refusal(
    applicant: Applicant, msisdn: str, phone_owner: str | None
) -> IdentityReason | None:
    """One phone, one account; and a pupil never registers with a guardian's phone."""
    if phone_owner is not None:
        return IdentityReason.PHONE_IN_USE
    if applicant.is_student and msisdn in applicant.guardian_msisdns:
        return IdentityReason.GUARDIAN_PHONE
    return None


def registration_refusal(
    applicant: Applicant,
    code: LinkCode | None,
    msisdn: str,
    phone_owner: str | None,
    today: date,
    now_ms: int,
    min_age: int,
) -> IdentityReason | None:
    """The whole check of a registration with a linking code and a verified phone."""
    if code is not None and code.person_id != applicant.person_id:
        return IdentityReason.CODE_UNKNOWN
    return (
        code_refusal(code, now_ms)
        or new_account_refusal(applicant, today, min_age)
        or phone_refusal(applicant, msisdn, phone_owner)
    )
