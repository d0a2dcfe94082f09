"""Phone numbers and SMS challenges: parsing, one-time codes, expiry and attempt limits.

Pure: the msisdn delegate endpoints load a challenge, ask these functions, and store the result.
Numbers are kept in Synapse's canonical msisdn form, E.164 digits without the "+".
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets

import attrs
import phonenumbers

from sferum_shared.vocabulary import Reason


class PhoneError(ValueError):
    pass


def parse_msisdn(phone_number: str, country: str, default_region: str) -> str:
    """E.164 digits of a number typed by a user; `country` is the client's ISO region, if any."""
    region = (country or default_region).upper()
    try:
        number = phonenumbers.parse(phone_number, region)
    except phonenumbers.NumberParseException as e:
        raise PhoneError(f"{phone_number!r} is not a phone number: {e}") from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneError(f"{phone_number!r} is not a valid phone number for region {region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


def msisdn_of_e164(e164: str) -> str:
    """The roster keeps "+79161234567"; Synapse and the rules compare "79161234567"."""
    return e164.removeprefix("+")


def display_msisdn(msisdn: str) -> str:
    number = phonenumbers.parse("+" + msisdn)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


@attrs.frozen
class SmsLimits:
    code_ttl_ms: int = 10 * 60 * 1000
    max_attempts: int = 5
    max_sends_per_window: int = 3
    # Every number together: what SMS may cost the school in an hour, whoever asks for them.
    max_sends_per_window_total: int = 200
    send_window_ms: int = 60 * 60 * 1000
    # How long a checked number stays usable for the registration that asked for it.
    validated_ttl_ms: int = 60 * 60 * 1000


@attrs.frozen
class SmsChallenge:
    sid: str
    client_secret: str
    msisdn: str
    code_hash: str
    created_ms: int
    expires_ms: int
    attempts: int = 0
    validated_ms: int | None = None


class SubmitOutcome(enum.StrEnum):
    """The result of entering an SMS code. The values are API (reasons under ru.sferum.reason)."""

    VALIDATED = "validated"
    UNKNOWN = Reason.SMS_SESSION_UNKNOWN
    WRONG_CODE = Reason.SMS_CODE_WRONG
    EXPIRED = Reason.SMS_CODE_EXPIRED
    TOO_MANY_ATTEMPTS = Reason.SMS_ATTEMPTS_EXHAUSTED


def new_sms_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def hash_code(sid: str, code: str) -> str:
    """Codes are short, so they are bound to their session before hashing; never stored plain."""
    return hashlib.sha256(f"{sid}:{code}".encode()).hexdigest()


def new_challenge(
    msisdn: str, client_secret: str, now_ms: int, limits: SmsLimits
) -> tuple[SmsChallenge, str]:
    """A fresh challenge and its plain code (to send, then forget)."""
    sid = secrets.token_urlsafe(18)
    code = new_sms_code()
    challenge = SmsChallenge(
        sid=sid,
        client_secret=client_secret,
        msisdn=msisdn,
        code_hash=hash_code(sid, code),
        created_ms=now_ms,
        expires_ms=now_ms + limits.code_ttl_ms,
    )
    return challenge, code


def retry_after_ms(recent_sends_ms: list[int], now_ms: int, limits: SmsLimits) -> int | None:
    """None if another SMS may go to this number now, else how long to wait."""
    return _wait_ms(recent_sends_ms, now_ms, limits.send_window_ms, limits.max_sends_per_window)


def school_retry_after_ms(
    recent_sends_ms: list[int], now_ms: int, limits: SmsLimits
) -> int | None:
    """None if the school may send another SMS now (`recent_sends_ms`: to any number), else how
    long to wait. This bounds what a flood of requests for unknown numbers can cost."""
    return _wait_ms(
        recent_sends_ms, now_ms, limits.send_window_ms, limits.max_sends_per_window_total
    )


def _wait_ms(recent_sends_ms: list[int], now_ms: int, window_ms: int, allowed: int) -> int | None:
    in_window = sorted(t for t in recent_sends_ms if now_ms - t < window_ms)
    if len(in_window) < allowed:
        return None
    oldest_counted = in_window[-allowed]
    return oldest_counted + window_ms - now_ms


def submit(
    challenge: SmsChallenge | None,
    client_secret: str,
    code: str,
    now_ms: int,
    limits: SmsLimits,
) -> tuple[SubmitOutcome, SmsChallenge | None]:
    """Checks an entered code; returns the outcome and the challenge to store (None: unchanged)."""
    if challenge is None or not hmac.compare_digest(challenge.client_secret, client_secret):
        return SubmitOutcome.UNKNOWN, None
    if challenge.validated_ms is not None:
        return SubmitOutcome.VALIDATED, None
    if challenge.attempts >= limits.max_attempts:
        return SubmitOutcome.TOO_MANY_ATTEMPTS, None
    if now_ms >= challenge.expires_ms:
        return SubmitOutcome.EXPIRED, None
    if not hmac.compare_digest(challenge.code_hash, hash_code(challenge.sid, code.strip())):
        return SubmitOutcome.WRONG_CODE, attrs.evolve(challenge, attempts=challenge.attempts + 1)
    return SubmitOutcome.VALIDATED, attrs.evolve(challenge, validated_ms=now_ms)


def validated(
    challenge: SmsChallenge | None, client_secret: str, now_ms: int, limits: SmsLimits
) -> bool:
    return (
        challenge is not None
        and challenge.validated_ms is not None
        and now_ms - challenge.validated_ms < limits.validated_ttl_ms
        and hmac.compare_digest(challenge.client_secret, client_secret)
    )
