"""When a printed card still opens its account (`policy.cards`), as a table."""

from __future__ import annotations

import pytest

from synapse_sferum.policy.cards import Card, CardVoid, card_void

DAY = 24 * 3600 * 1000
CARD = Card("scrypt$…", issued_ms=100 * DAY)


@pytest.mark.parametrize(
    ("now_ms", "own_password", "void"),
    [
        (100 * DAY, False, None),  # just printed
        (129 * DAY, False, None),  # day 29 of 30
        (130 * DAY - 1, False, None),
        (130 * DAY, False, CardVoid.EXPIRED),  # 30 days on
        (100 * DAY + 60_000, True, CardVoid.PASSWORD_CHANGED),  # changed a minute later
        (500 * DAY, True, CardVoid.PASSWORD_CHANGED),
    ],
)
def test_a_card_opens_its_account_until(now_ms: int, own_password: bool, void: object) -> None:
    assert card_void(CARD, now_ms=now_ms, lifetime_ms=30 * DAY, has_own_password=own_password) == (
        void
    )
