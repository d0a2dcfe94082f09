"""Delegated delayed leave events (sfu.delayed): what a token request may hand over, and the
requests the SFU then makes of the homeserver."""

from __future__ import annotations

from typing import Any

import pytest

from sfu.delayed import (
    MAX_DELAY_MS,
    DelayedLeave,
    DelegationError,
    action_url,
    delayed_leave_of,
    parse_delegation,
)

URL = "https://school.test"


def test_no_delegation_is_none() -> None:
    assert parse_delegation({}) is None
    assert parse_delegation({"delay_id": "", "delay_timeout": None}) is None


def test_a_delegation_becomes_a_claim_and_back() -> None:
    body = {"delay_id": "syd_abc", "delay_timeout": 8000, "delay_cs_api_url": URL}
    leave = parse_delegation(body)
    assert leave == DelayedLeave("syd_abc", 8000)
    assert leave.restart_every == 4.0
    assert delayed_leave_of(leave.claims()) == leave
    assert DelayedLeave("x", 500).restart_every == 1.0  # never a busy loop


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"delay_id": "d", "delay_timeout": 5000}, "delay_cs_api_url"),
        ({"delay_id": "d", "delay_cs_api_url": URL}, "delay_timeout"),
        ({"delay_timeout": 5000}, "delay_cs_api_url, delay_id"),
        ({"delay_id": "a/b", "delay_timeout": 5000, "delay_cs_api_url": URL}, "delay_id"),
        ({"delay_id": 7, "delay_timeout": 5000, "delay_cs_api_url": URL}, "delay_id"),
        ({"delay_id": "d" * 256, "delay_timeout": 5000, "delay_cs_api_url": URL}, "delay_id"),
        ({"delay_id": "d", "delay_timeout": 0, "delay_cs_api_url": URL}, "delay_timeout"),
        ({"delay_id": "d", "delay_timeout": "5000", "delay_cs_api_url": URL}, "delay_timeout"),
        ({"delay_id": "d", "delay_timeout": True, "delay_cs_api_url": URL}, "delay_timeout"),
        (
            {"delay_id": "d", "delay_timeout": MAX_DELAY_MS + 1, "delay_cs_api_url": URL},
            "delay_timeout",
        ),
        ({"delay_id": "d", "delay_timeout": 5000, "delay_cs_api_url": "file:///"}, "cs_api"),
    ],
)
def test_bad_delegations_say_what_is_wrong(body: dict[str, Any], says: str) -> None:
    with pytest.raises(DelegationError, match=says):
        parse_delegation(body)


@pytest.mark.parametrize(
    "raw",
    [None, "x", {"delay_id": "", "timeout_ms": 5}, {"delay_id": "d", "timeout_ms": "5"}],
)
def test_a_broken_claim_is_no_delegation(raw: Any) -> None:
    assert delayed_leave_of({"ru.sferum.delayed_leave": raw}) is None


def test_actions_go_to_our_homeserver_with_the_id_quoted() -> None:
    leave = DelayedLeave("syd_a+b c", 8000)
    assert action_url("http://127.0.0.1:8008/", leave, "restart") == (
        "http://127.0.0.1:8008/_matrix/client/unstable/org.matrix.msc4140/"
        "delayed_events/syd_a%2Bb%20c/restart"
    )
