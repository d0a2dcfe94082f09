"""Who may get an account, with which code and phone: the rules as tables of cases."""

from __future__ import annotations

from datetime import date

import attrs
import pytest

from sferum_shared.vocabulary import Reason
from synapse_sferum.policy.identity import (
    Applicant,
    LinkCode,
    new_account_refusal,
    registration_refusal,
)

TODAY = date(2026, 11, 22)
NOW = 1_000_000
PUPIL = Applicant(
    "p-1",
    in_directory=True,
    is_student=True,
    birth_date=date(2015, 3, 14),
    guardian_msisdns=frozenset({"79031234501"}),
)
PARENT = Applicant("g-1", in_directory=True, birth_date=None)
CODE = LinkCode("AAAA-BBBB-CCCC", "p-1", expires_ms=NOW + 1)


@pytest.mark.parametrize(
    ("applicant", "expected"),
    [
        (PUPIL, None),
        (PARENT, None),
        (Applicant("x", in_directory=False), Reason.PERSON_NOT_IN_DIRECTORY),
        (attrs.evolve(PUPIL, enabled=False), Reason.PERSON_DISABLED),
        (attrs.evolve(PUPIL, birth_date=date(2020, 11, 23)), Reason.TOO_YOUNG),
        (attrs.evolve(PUPIL, birth_date=date(2020, 11, 22)), None),  # six today
        (attrs.evolve(PUPIL, has_account=True), Reason.PERSON_HAS_ACCOUNT),
        # Being under age outranks having an account (that account predates a roster fix).
        (
            attrs.evolve(PUPIL, has_account=True, birth_date=date(2022, 1, 1)),
            Reason.TOO_YOUNG,
        ),
    ],
)
def test_new_account(applicant: Applicant, expected: Reason | None) -> None:
    assert new_account_refusal(applicant, TODAY, min_age=6) is expected


@pytest.mark.parametrize(
    ("applicant", "code", "msisdn", "owner", "expected"),
    [
        (PUPIL, CODE, "79165550001", None, None),
        (PUPIL, None, "79165550001", None, Reason.LINK_CODE_UNKNOWN),
        (PUPIL, attrs.evolve(CODE, used_by="@x:s"), "79165550001", None, Reason.LINK_CODE_USED),
        (
            PUPIL,
            attrs.evolve(CODE, expires_ms=NOW),
            "79165550001",
            None,
            Reason.LINK_CODE_EXPIRED,
        ),
        (
            PUPIL,
            attrs.evolve(CODE, person_id="p-2"),
            "79165550001",
            None,
            Reason.LINK_CODE_UNKNOWN,
        ),
        (PUPIL, CODE, "79165550001", "@someone:s", Reason.PHONE_IN_USE),
        (PUPIL, CODE, "79031234501", None, Reason.PHONE_OF_GUARDIAN),
        # A guardian's number is refused for the pupil only; the guardian may use it.
        (attrs.evolve(PARENT, person_id="p-1"), CODE, "79031234501", None, None),
        (
            attrs.evolve(PUPIL, has_account=True),
            CODE,
            "79165550001",
            None,
            Reason.PERSON_HAS_ACCOUNT,
        ),
    ],
)
def test_registration_with_code_and_phone(
    applicant: Applicant,
    code: LinkCode | None,
    msisdn: str,
    owner: str | None,
    expected: Reason | None,
) -> None:
    refusal = registration_refusal(applicant, code, msisdn, owner, TODAY, NOW, min_age=6)
    assert refusal is expected
