"""The phone-check endpoints Synapse delegates to, over the mocked ModuleApi and real SQLite."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from synapse.module_api.errors import SynapseError

from synapse_sferum.config import parse_config
from synapse_sferum.module import synapse_clock
from synapse_sferum.msisdn_delegate import MsisdnDelegate
from synapse_sferum.service import DirectoryService
from tests.module.conftest import done


def delegate(api: mock.Mock, outbox: Path, **phone: object) -> MsisdnDelegate:
    config = parse_config(
        {
            "admin_api_secret": "x" * 32,
            "phone": {"sms": {"backend": "file", "path": str(outbox)}, **phone},
        }
    )
    clock = synapse_clock(api)
    api.defer_to_thread.side_effect = lambda f, *a: done(f(*a))
    return MsisdnDelegate(api, config, DirectoryService(api, config, clock), clock)


def request(number: str, attempt: object = 1) -> dict[str, object]:
    return {"client_secret": "s3cret", "phone_number": number, "send_attempt": attempt}


async def test_the_school_sends_at_most_its_hourly_sms(api: mock.Mock, tmp_path: Path) -> None:
    outbox = tmp_path / "sms.jsonl"
    phones = delegate(api, outbox, max_sms_per_hour_total=2)
    for n in (1, 2):
        status, _ = await phones.request_token(request(f"+7 916 555-10-0{n}"))
        assert status == 200
    with pytest.raises(SynapseError) as refused:
        await phones.request_token(request("+7 916 555-10-03"))
    assert refused.value.code == 429
    assert (
        refused.value.error_dict(None)["ru.sferum.reason"] == "ru.sferum.sms_school_rate_limited"
    )
    assert len(outbox.read_text().splitlines()) == 2


@pytest.mark.parametrize("attempt", ["1", None, -1, True, 1.5])
async def test_a_mistyped_attempt_sends_nothing(
    api: mock.Mock, tmp_path: Path, attempt: object
) -> None:
    outbox = tmp_path / "sms.jsonl"
    with pytest.raises(SynapseError) as refused:
        await delegate(api, outbox).request_token(request("+7 916 555-10-04", attempt))
    assert refused.value.code == 400
    assert not outbox.exists()
