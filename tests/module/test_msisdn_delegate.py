"""The phone-check endpoints Synapse delegates to, over the mocked ModuleApi and real SQLite.

Times are the `clock` fixture's: the mocked Synapse's clock, which the module reads.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from synapse.module_api.errors import SynapseError

from sferum_shared import ManualClock
from synapse_sferum.module import synapse_clock
from synapse_sferum.msisdn_delegate import MsisdnDelegate
from synapse_sferum.service import DirectoryService
from synapse_sferum.store import identity
from synapse_sferum.store.schema import prepare_schema_txn
from tests.module.conftest import done, sferum_config, uid
from tests.sqlite_txn import Cursor

MINUTE = 60
NUMBER = "+7 916 555-10-01"
MSISDN = "79165551001"
SECRET = "s3cret"


def delegate(api: mock.Mock, outbox: Path, **phone: object) -> MsisdnDelegate:
    config = sferum_config(phone={"sms": {"backend": "file", "path": str(outbox)}, **phone})
    clock = synapse_clock(api)
    api.defer_to_thread.side_effect = lambda f, *a: done(f(*a))
    return MsisdnDelegate(api, config, DirectoryService(api, config, clock), clock)


def request(number: str, attempt: object = 1) -> dict[str, object]:
    return {"client_secret": SECRET, "phone_number": number, "send_attempt": attempt}


def reason(error: SynapseError) -> Any:
    return error.error_dict(None)["ru.sferum.reason"]


def last_code(outbox: Path) -> str:
    """The code in the newest SMS of the file gateway's outbox."""
    text = json.loads(outbox.read_text(encoding="utf-8").splitlines()[-1])["text"]
    found = re.search(r": (\d{6})\.", text)
    assert found is not None, text
    return found.group(1)


@pytest.mark.parametrize(
    ("limit", "numbers", "refusal"),
    [
        ("max_sms_per_hour", ["+7 916 555-10-01"] * 3, "ru.sferum.sms_rate_limited"),
        (
            "max_sms_per_hour_total",
            ["+7 916 555-10-01", "+7 916 555-10-02", "+7 916 555-10-03"],
            "ru.sferum.sms_school_rate_limited",
        ),
    ],
)
async def test_sms_are_limited_per_number_and_per_school_for_an_hour(
    api: mock.Mock,
    clock: ManualClock,
    tmp_path: Path,
    limit: str,
    numbers: list[str],
    refusal: str,
) -> None:
    """Two SMS an hour: the third waits until the first is an hour old."""
    outbox = tmp_path / "sms.jsonl"
    phones = delegate(api, outbox, **{limit: 2})
    first, second, third = numbers
    assert (await phones.request_token(request(first)))[0] == 200
    clock.advance(10 * MINUTE)
    assert (await phones.request_token(request(second)))[0] == 200
    with pytest.raises(SynapseError) as refused:
        await phones.request_token(request(third))
    assert refused.value.code == 429 and reason(refused.value) == refusal
    assert refused.value.error_dict(None)["retry_after_ms"] == 50 * MINUTE * 1000
    clock.advance(50 * MINUTE - 1)
    with pytest.raises(SynapseError):
        await phones.request_token(request(third))
    clock.advance(1)
    assert (await phones.request_token(request(third)))[0] == 200
    assert len(outbox.read_text().splitlines()) == 3


async def test_the_right_code_validates_the_number_for_an_hour(
    api: mock.Mock, clock: ManualClock, tmp_path: Path
) -> None:
    outbox = tmp_path / "sms.jsonl"
    phones = delegate(api, outbox)
    status, sent = await phones.request_token(request(NUMBER))
    assert (status, sent["msisdn"]) == (200, MSISDN)
    asked = {"sid": sent["sid"], "client_secret": SECRET}
    with pytest.raises(SynapseError) as unchecked:
        await phones.get_validated(asked)
    assert unchecked.value.errcode == "M_SESSION_NOT_VALIDATED"
    clock.advance(MINUTE)
    submitted = {**asked, "token": f" {last_code(outbox)} "}
    assert await phones.submit_token(submitted) == (200, {"success": True})
    validated_at = clock.ms()
    assert await phones.get_validated(asked) == (
        200,
        {"medium": "msisdn", "address": MSISDN, "validated_at": validated_at},
    )
    with pytest.raises(SynapseError):  # someone else's session
        await phones.get_validated({**asked, "client_secret": "guess"})
    clock.advance(60 * MINUTE - 1)
    assert (await phones.get_validated(asked))[0] == 200
    clock.advance(1)
    with pytest.raises(SynapseError):
        await phones.get_validated(asked)


async def test_wrong_codes_are_counted_until_the_attempts_are_used_up(
    api: mock.Mock, clock: ManualClock, tmp_path: Path
) -> None:
    outbox = tmp_path / "sms.jsonl"
    phones = delegate(api, outbox, max_attempts=3)
    _, sent = await phones.request_token(request(NUMBER))
    right = last_code(outbox)
    wrong = "000000" if right != "000000" else "111111"
    asked = {"sid": sent["sid"], "client_secret": SECRET}
    for left in (2, 1, 0):
        status, answer = await phones.submit_token({**asked, "token": wrong})
        assert status == 200 and answer["success"] is False
        assert answer["ru.sferum.reason"] == "ru.sferum.sms_code_wrong"
        assert answer["attempts_left"] == left
    _, answer = await phones.submit_token({**asked, "token": right})
    assert answer["success"] is False and answer["errcode"] == "M_LIMIT_EXCEEDED"
    assert answer["ru.sferum.reason"] == "ru.sferum.sms_attempts_exhausted"
    with pytest.raises(SynapseError):
        await phones.get_validated(asked)


@pytest.mark.parametrize(
    ("after_seconds", "success", "why"),
    [(600 - 1, True, None), (600, False, "ru.sferum.sms_code_expired")],
)
async def test_a_code_expires_after_its_time_to_live(
    api: mock.Mock,
    clock: ManualClock,
    tmp_path: Path,
    after_seconds: int,
    success: bool,
    why: str | None,
) -> None:
    outbox = tmp_path / "sms.jsonl"
    phones = delegate(api, outbox, code_ttl_seconds=600)
    _, sent = await phones.request_token(request(NUMBER))
    clock.advance(after_seconds)
    submitted = {"sid": sent["sid"], "client_secret": SECRET, "token": last_code(outbox)}
    _, answer = await phones.submit_token(submitted)
    assert answer["success"] is success
    assert answer.get("ru.sferum.reason") == why


@pytest.mark.parametrize(
    "change", [{"sid": "nope"}, {"client_secret": "guess"}], ids=["sid", "secret"]
)
async def test_a_code_for_an_unknown_session_is_refused(
    api: mock.Mock, clock: ManualClock, tmp_path: Path, change: dict[str, str]
) -> None:
    outbox = tmp_path / "sms.jsonl"
    phones = delegate(api, outbox)
    _, sent = await phones.request_token(request(NUMBER))
    submitted = {"sid": sent["sid"], "client_secret": SECRET, "token": last_code(outbox)}
    _, answer = await phones.submit_token({**submitted, **change})
    assert answer["success"] is False
    assert answer["ru.sferum.reason"] == "ru.sferum.sms_session_unknown"


async def test_a_number_that_has_an_account_gets_no_sms(
    api: mock.Mock, database: sqlite3.Connection, tmp_path: Path
) -> None:
    prepare_schema_txn(Cursor(database))
    identity.link_new_account_txn(Cursor(database), "g-morozova", uid("m"), MSISDN, 0)
    outbox = tmp_path / "sms.jsonl"
    with pytest.raises(SynapseError) as refused:
        await delegate(api, outbox).request_token(request(NUMBER))
    assert refused.value.code == 400 and refused.value.errcode == "M_THREEPID_IN_USE"
    assert reason(refused.value) == "ru.sferum.phone_in_use"
    assert not outbox.exists()


async def test_an_sms_that_could_not_be_sent_does_not_count(
    api: mock.Mock, tmp_path: Path
) -> None:
    outbox = tmp_path / "sms.jsonl"
    phones = delegate(api, outbox, max_sms_per_hour=1)
    api.defer_to_thread.side_effect = OSError("the gateway is down")
    with pytest.raises(SynapseError) as failed:
        await phones.request_token(request(NUMBER))
    assert failed.value.code == 502
    api.defer_to_thread.side_effect = lambda f, *a: done(f(*a))
    assert (await phones.request_token(request(NUMBER)))[0] == 200


@pytest.mark.parametrize("attempt", ["1", None, -1, True, 1.5])
async def test_a_mistyped_attempt_sends_nothing(
    api: mock.Mock, tmp_path: Path, attempt: object
) -> None:
    outbox = tmp_path / "sms.jsonl"
    with pytest.raises(SynapseError) as refused:
        await delegate(api, outbox).request_token(request("+7 916 555-10-04", attempt))
    assert refused.value.code == 400
    assert not outbox.exists()
