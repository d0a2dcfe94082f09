"""The registration page's own pieces (synapse_sferum/join.py): the code as typed, the window."""

from __future__ import annotations

import pytest

from synapse_sferum.join import AttemptWindow, normalize_code


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("K7QM-4TXP-9RWA", "K7QM-4TXP-9RWA"),
        ("k7qm-4txp-9rwa", "K7QM-4TXP-9RWA"),
        ("K7QM 4TXP 9RWA", "K7QM-4TXP-9RWA"),
        (" k7qm4txp9rwa ", "K7QM-4TXP-9RWA"),
        ("K7QM-4TXP-9RW", None),  # one short
        ("K7QM-4TXP-9RWAA", None),
        ("K7QM-4TXP-9RW0", None),  # 0 and O, 1 and I are never in a code
        ("K7QM-4TXP-9RWI", None),
        ("", None),
        ("КОД-КОД-КОД", None),
    ],
)
def test_a_code_as_typed_or_linked(typed: str, code: str | None) -> None:
    assert normalize_code(typed) == code


def test_the_window_lets_a_meeting_through_and_stops_a_flood() -> None:
    now = [0.0]
    window = AttemptWindow(limit=3, seconds=60, now=lambda: now[0])
    assert [window.allow("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert window.allow("10.0.0.2")  # another address has its own count
    now[0] = 59.0
    assert not window.allow("10.0.0.1")
    now[0] = 60.5  # the first attempts left the window
    assert window.allow("10.0.0.1")
