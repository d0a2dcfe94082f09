"""The identity-API endpoints Synapse delegates phone checks to (`account_threepid_delegates`).

Synapse proxies the client's /register/msisdn/requestToken and the code the user types
(submit_url) here, and asks getValidated3pid during the registration's `m.login.msisdn`
stage. Errors carry an errcode and a namespaced reason, which Synapse passes to the client.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.module_api import DirectServeJsonResource, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from sferum_shared import Clock
from sferum_shared.vocabulary import Key, Reason
from synapse_sferum import compat
from synapse_sferum.bodies import json_object
from synapse_sferum.config import SferumConfig
from synapse_sferum.msisdn_path import msisdn_delegate_base
from synapse_sferum.policy.identity import MESSAGES
from synapse_sferum.policy.phone import (
    PhoneError,
    SmsChallenge,
    SmsLimits,
    SubmitOutcome,
    display_msisdn,
    new_challenge,
    parse_msisdn,
    retry_after_ms,
    school_retry_after_ms,
    submit,
    validated,
)
from synapse_sferum.service import DirectoryService
from synapse_sferum.sms import SmsGateway, sms_gateway
from synapse_sferum.store import identity

logger = logging.getLogger(__name__)

IDENTITY_API = "/_matrix/identity/api/v1"
CHALLENGE_RETENTION_MS = 24 * 60 * 60 * 1000

_SUBMIT_ERRORS: dict[SubmitOutcome, tuple[str, str]] = {
    SubmitOutcome.UNKNOWN: (Codes.NOT_FOUND, "No such phone verification"),
    SubmitOutcome.WRONG_CODE: (Codes.THREEPID_AUTH_FAILED, "The code is not right"),
    SubmitOutcome.EXPIRED: (Codes.THREEPID_AUTH_FAILED, "The code has expired; ask for a new SMS"),
    SubmitOutcome.TOO_MANY_ATTEMPTS: (
        Codes.LIMIT_EXCEEDED,
        "Too many wrong codes; ask for a new SMS",
    ),
}


def _refused(code: int, errcode: str, message: str, reason: str, **extra: Any) -> SynapseError:
    return SynapseError(code, message, errcode, {Key.REASON: reason, **extra})


def _field(body: dict[str, Any], key: str, *, required: bool = True) -> str:
    """A string field of the identity API's body (the spec's types: no numbers for strings)."""
    value = body.get(key)
    if value is None and not required:
        return ""
    if value is None:
        raise SynapseError(400, f"'{key}' is missing", Codes.MISSING_PARAM)
    if not isinstance(value, str) or (required and not value):
        raise SynapseError(400, f"'{key}' must be a non-empty string", Codes.INVALID_PARAM)
    return value


def _send_attempt(body: dict[str, Any]) -> int:
    """The client's attempt counter, a whole number (checked before any SMS goes out)."""
    value = body.get("send_attempt")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SynapseError(
            400, f"'send_attempt' must be a whole number, got {value!r}", Codes.INVALID_PARAM
        )
    return value


class _Post(DirectServeJsonResource):
    def __init__(self, handler: Any):
        super().__init__()
        self._handler = handler

    async def _async_render_POST(self, request: Any) -> tuple[int, Any]:
        result: tuple[int, Any] = await self._handler(json_object(request))
        return result


class _Get(DirectServeJsonResource):
    def __init__(self, handler: Any):
        super().__init__()
        self._handler = handler

    async def _async_render_GET(self, request: Any) -> tuple[int, Any]:
        args = {k.decode(): v[0].decode() for k, v in request.args.items() if v}
        result: tuple[int, Any] = await self._handler(args)
        return result


class MsisdnDelegate:
    def __init__(
        self, api: ModuleApi, config: SferumConfig, directory: DirectoryService, clock: Clock
    ):
        self._api = api
        self._directory = directory
        self._clock = clock
        self._region = config.phone.default_region
        self._limits = SmsLimits(
            code_ttl_ms=config.phone.code_ttl_seconds * 1000,
            max_attempts=config.phone.max_attempts,
            max_sends_per_window=config.phone.max_sms_per_hour,
            max_sends_per_window_total=config.phone.max_sms_per_hour_total,
        )
        self._gateway: SmsGateway | None = sms_gateway(api, config.phone.sms, clock)
        self._base = msisdn_delegate_base(config.admin_api_secret)

    def register(self) -> None:
        compat.refuse_mistyped_phone_requests()
        for path, resource in (
            ("validate/msisdn/requestToken", _Post(self.request_token)),
            ("validate/msisdn/submitToken", _Post(self.submit_token)),
            ("3pid/getValidated3pid", _Get(self.get_validated)),
        ):
            self._api.register_web_resource(f"{self._base}{IDENTITY_API}/{path}", resource)

    async def request_token(self, body: dict[str, Any]) -> tuple[int, Any]:
        client_secret = _field(body, "client_secret")
        _send_attempt(body)
        try:
            msisdn = parse_msisdn(
                _field(body, "phone_number"),
                _field(body, "country", required=False),
                self._region,
            )
        except PhoneError as e:
            raise _refused(400, Codes.INVALID_PARAM, str(e), Reason.PHONE_INVALID) from e
        if self._gateway is None:
            raise SynapseError(503, "SMS sending is not configured on this server", Codes.UNKNOWN)
        if await self._directory.run("sferum_phone_owner", identity.phone_owner_txn, msisdn):
            in_use = Reason.PHONE_IN_USE
            raise _refused(400, Codes.THREEPID_IN_USE, MESSAGES[in_use], in_use)
        now = self._clock.ms()
        challenge, code = new_challenge(msisdn, client_secret, now, self._limits)
        refused = await self._directory.run(
            "sferum_open_challenge", _open_challenge_txn, challenge, self._limits
        )
        if refused is not None:
            wait, limit = refused
            message = (
                "Too many SMS to this number; try again later"
                if limit == Reason.SMS_RATE_LIMITED
                else "The school sends no more SMS this hour; try again later"
            )
            raise _refused(429, Codes.LIMIT_EXCEEDED, message, limit, retry_after_ms=wait)
        text = f"Код подтверждения для {self._api.server_name}: {code}. Никому его не сообщайте."
        try:
            await self._gateway.send("+" + msisdn, text)
        except Exception as e:
            logger.exception("synapse_sferum: could not send the SMS to %s", msisdn[:-4] + "****")
            await self._directory.run(
                "sferum_drop_challenge", identity.delete_challenge_txn, challenge.sid
            )
            raise SynapseError(502, "The SMS could not be sent; try again", Codes.UNKNOWN) from e
        return 200, {"sid": challenge.sid, "msisdn": msisdn, "intl_fmt": display_msisdn(msisdn)}

    async def submit_token(self, body: dict[str, Any]) -> tuple[int, Any]:
        sid, client_secret = _field(body, "sid"), _field(body, "client_secret")
        token = _field(body, "token")
        # One transaction per guess, each waiting for the one before on the same challenge:
        # a burst of guesses is judged one by one against the attempts the others left.
        outcome, changed = await self._directory.run_exclusive(
            "sferum_submit_code",
            _judge_code_txn,
            sid,
            client_secret,
            token,
            self._clock.ms(),
            self._limits,
        )
        if outcome is SubmitOutcome.VALIDATED:
            return 200, {"success": True}
        # Synapse hides every non-200 answer of submitToken behind "Error contacting the
        # identity server", so a refusal is a 200 with success false, as Sydent answers.
        errcode, message = _SUBMIT_ERRORS[outcome]
        answer: dict[str, Any] = {
            "success": False,
            "errcode": errcode,
            "error": message,
            Key.REASON: outcome.value,
        }
        if outcome is SubmitOutcome.WRONG_CODE and changed is not None:
            answer["attempts_left"] = self._limits.max_attempts - changed.attempts
        return 200, answer

    async def get_validated(self, args: dict[str, str]) -> tuple[int, Any]:
        sid, client_secret = args.get("sid", ""), args.get("client_secret", "")
        challenge = await self._directory.run("sferum_challenge", identity.challenge_txn, sid)
        now = self._clock.ms()
        if challenge is None or not validated(challenge, client_secret, now, self._limits):
            raise SynapseError(
                400, "This phone number has not been verified", "M_SESSION_NOT_VALIDATED"
            )
        return 200, {
            "medium": "msisdn",
            "address": challenge.msisdn,
            "validated_at": challenge.validated_ms,
        }


def _judge_code_txn(
    txn: Any, sid: str, client_secret: str, code: str, now_ms: int, limits: SmsLimits
) -> tuple[SubmitOutcome, SmsChallenge | None]:
    challenge = identity.lock_challenge_txn(txn, sid)
    outcome, changed = submit(challenge, client_secret, code, now_ms, limits)
    if changed is not None:
        identity.update_challenge_txn(txn, changed)
    return outcome, changed


def _open_challenge_txn(
    txn: Any, challenge: SmsChallenge, limits: SmsLimits
) -> tuple[int, str] | None:
    """Stores the challenge unless the number, or the school, had its SMS allowance; returns
    the wait and its reason then."""
    now = challenge.created_ms
    since = now - limits.send_window_ms
    identity.delete_challenges_before_txn(txn, now - CHALLENGE_RETENTION_MS)
    recent = identity.recent_sends_txn(txn, challenge.msisdn, since)
    wait = retry_after_ms(recent, now, limits)
    if wait is not None:
        return wait, Reason.SMS_RATE_LIMITED
    everyone = identity.recent_sends_total_txn(txn, since, limits.max_sends_per_window_total)
    wait = school_retry_after_ms(everyone, now, limits)
    if wait is not None:
        return wait, Reason.SMS_SCHOOL_RATE_LIMITED
    identity.insert_challenge_txn(txn, challenge)
    return None
