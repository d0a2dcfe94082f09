"""Phone numbers and SMS challenges: parsing, expiry, attempts and the send allowance."""

from __future__ import annotations

import attrs
import pytest

from synapse_sferum.policy.phone import (
    PhoneError,
    SmsLimits,
    SubmitOutcome,
    new_challenge,
    parse_msisdn,
    retry_after_ms,
    school_retry_after_ms,
    submit,
    validated,
)

LIMITS = SmsLimits(
    code_ttl_ms=600_000,
    max_attempts=3,
    max_sends_per_window=2,
    send_window_ms=3_600_000,
    validated_ttl_ms=3_600_000,
)


@pytest.mark.parametrize(
    ("typed", "country", "expected"),
    [
        ("+7 916 123-45-67", "", "79161234567"),
        ("8 (916) 123-45-67", "RU", "79161234567"),
        ("916 123 45 67", "", "79161234567"),
        ("+44 20 7946 0958", "RU", "442079460958"),
        ("020 7946 0958", "GB", "442079460958"),
    ],
)
def test_numbers_become_msisdns(typed: str, country: str, expected: str) -> None:
    assert parse_msisdn(typed, country, "RU") == expected


@pytest.mark.parametrize("typed", ["", "12", "not a phone", "+7 916 123"])
def test_bad_numbers_are_refused(typed: str) -> None:
    with pytest.raises(PhoneError):
        parse_msisdn(typed, "", "RU")


def test_a_code_validates_once_within_its_time_and_attempts() -> None:
    challenge, code = new_challenge("79161234567", "secret", 0, LIMITS)
    assert challenge.code_hash != code and len(code) == 6
    outcome, changed = submit(challenge, "secret", "x" + code, 1, LIMITS)
    assert outcome is SubmitOutcome.WRONG_CODE and changed is not None
    assert changed.attempts == 1
    outcome, done = submit(changed, "secret", f" {code} ", 2, LIMITS)
    assert outcome is SubmitOutcome.VALIDATED and done is not None
    assert validated(done, "secret", 3, LIMITS)
    assert not validated(done, "other secret", 3, LIMITS)
    assert not validated(done, "secret", 2 + LIMITS.validated_ttl_ms, LIMITS)


@pytest.mark.parametrize(
    ("attempts", "now", "secret", "expected"),
    [
        (0, LIMITS.code_ttl_ms, "secret", SubmitOutcome.EXPIRED),
        (LIMITS.max_attempts, 1, "secret", SubmitOutcome.TOO_MANY_ATTEMPTS),
        (0, 1, "wrong secret", SubmitOutcome.UNKNOWN),
    ],
)
def test_refused_submissions_change_nothing(
    attempts: int, now: int, secret: str, expected: SubmitOutcome
) -> None:
    challenge, code = new_challenge("79161234567", "secret", 0, LIMITS)
    challenge = attrs.evolve(challenge, attempts=attempts)
    assert submit(challenge, secret, code, now, LIMITS) == (expected, None)
    assert submit(None, secret, code, now, LIMITS) == (SubmitOutcome.UNKNOWN, None)


@pytest.mark.parametrize(
    ("sends", "now", "expected"),
    [
        ([], 0, None),
        ([0], 10, None),
        ([0, 100], 200, 3_600_000 - 200),
        ([0, 100, 500], 3_600_050, 3_600_100 - 3_600_050),  # the oldest left the window
        ([0, 100], 3_600_100, None),
    ],
)
def test_sms_allowance(sends: list[int], now: int, expected: int | None) -> None:
    assert retry_after_ms(sends, now, LIMITS) == expected


def test_the_schools_sms_allowance_counts_every_number() -> None:
    limits = attrs.evolve(LIMITS, max_sends_per_window_total=3)
    assert school_retry_after_ms([0, 10], 20, limits) is None
    assert school_retry_after_ms([0, 10, 20], 30, limits) == 3_600_000 - 30
    assert school_retry_after_ms([0, 10, 20], 3_600_000, limits) is None  # the first aged out
