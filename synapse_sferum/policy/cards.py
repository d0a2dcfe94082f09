"""When a school-issued card's password stops working (docs/identity.md, issue 11).

A card is printed once and handed to a child; whoever holds it later can sign in with it. So
the card opens the account only until the account has a password of its own (the first change
makes the card void), for a limited time after it was issued, and never after deactivation
(its row is deleted then). A reset prints a new card and voids every other way in.
"""

from __future__ import annotations

import enum

import attrs


@attrs.frozen
class Card:
    """The initial password of a school-issued account, as the module keeps it."""

    password_hash: str  # scrypt, see accounts.hash_password
    issued_ms: int


class CardVoid(enum.StrEnum):
    """Why a card no longer opens its account (for the log; the user sees a wrong password)."""

    PASSWORD_CHANGED = "the account has a password of its own"
    EXPIRED = "the card is older than accounts.initial_password_days"


def card_void(
    card: Card, *, now_ms: int, lifetime_ms: int, has_own_password: bool
) -> CardVoid | None:
    """None while the card still opens the account."""
    if has_own_password:
        return CardVoid.PASSWORD_CHANGED
    if now_ms >= card.issued_ms + lifetime_ms:
        return CardVoid.EXPIRED
    return None
