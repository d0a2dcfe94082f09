"""Who may get an account, with which linking code and which phone (docs/identity.md).

Pure functions over facts the glue gathers from the directory and the module's tables, so every
flow (linking code, SSO, school-issued accounts, the admin API) asks the same questions.
"""

from __future__ import annotations

from datetime import date

import attrs

from sferum_shared.vocabulary import Reason
from synapse_sferum.directory import age_on

MESSAGES: dict[Reason, str] = {
    Reason.PERSON_NOT_IN_DIRECTORY: "This person is not in the school directory",
    Reason.PERSON_DISABLED: "This person's account is disabled in the school roster",
    Reason.TOO_YOUNG: "Children under the minimum age cannot have an account",
    Reason.PERSON_HAS_ACCOUNT: "This person already has an account",
    Reason.LINK_CODE_UNKNOWN: "This linking code does not exist",
    Reason.LINK_CODE_USED: "This linking code has already been used",
    Reason.LINK_CODE_EXPIRED: "This linking code has expired",
    Reason.PHONE_INVALID: "This is not a valid phone number",
    Reason.PHONE_IN_USE: "This phone number already belongs to an account",
    Reason.PHONE_OF_GUARDIAN: "A pupil's account cannot use a parent's phone number",
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


def person_refusal(applicant: Applicant, today: date, min_age: int) -> Reason | None:
    """Whether this person may have an account at all (every flow asks this first)."""
    if not applicant.in_directory:
        return Reason.PERSON_NOT_IN_DIRECTORY
    if not applicant.enabled:
        return Reason.PERSON_DISABLED
    if applicant.birth_date is not None and age_on(applicant.birth_date, today) < min_age:
        return Reason.TOO_YOUNG
    return None


def new_account_refusal(applicant: Applicant, today: date, min_age: int) -> Reason | None:
    """A new account for the person: allowed, and the person has none yet."""
    refusal = person_refusal(applicant, today, min_age)
    if refusal is None and applicant.has_account:
        return Reason.PERSON_HAS_ACCOUNT
    return refusal


def code_refusal(code: LinkCode | None, now_ms: int) -> Reason | None:
    if code is None:
        return Reason.LINK_CODE_UNKNOWN
    if code.used_by is not None:
        return Reason.LINK_CODE_USED
    if now_ms >= code.expires_ms:
        return Reason.LINK_CODE_EXPIRED
    return None


def phone_refusal(
    applicant: Applicant, msisdn: str, phone_owner: str | None
) -> Reason | None:
    """One phone, one account; and a pupil never registers with a guardian's phone."""
    if phone_owner is not None:
        return Reason.PHONE_IN_USE
    if applicant.is_student and msisdn in applicant.guardian_msisdns:
        return Reason.PHONE_OF_GUARDIAN
    return None


def registration_refusal(
    applicant: Applicant,
    code: LinkCode | None,
    msisdn: str,
    phone_owner: str | None,
    today: date,
    now_ms: int,
    min_age: int,
) -> Reason | None:
    """The whole check of a registration with a linking code and a verified phone."""
    if code is not None and code.person_id != applicant.person_id:
        return Reason.LINK_CODE_UNKNOWN
    return (
        code_refusal(code, now_ms)
        or new_account_refusal(applicant, today, min_age)
        or phone_refusal(applicant, msisdn, phone_owner)
    )
