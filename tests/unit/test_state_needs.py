"""What an event callback declares it reads of the state (synapse_sferum/state_needs.py)."""

from __future__ import annotations

import pytest

from synapse_sferum.state_needs import NO_STATE, StateNeeds, StateWant, needs, union

STATE = {
    ("m.room.member", "@a:s"): "$a",
    ("m.room.member", "@b:s"): "$b",
    ("m.room.power_levels", ""): "$pl",
    ("m.room.create", ""): "$create",
}


@pytest.mark.parametrize(
    ("wanted", "selected"),
    [
        ((), set()),
        ((("m.room.member", "@a:s"),), {"$a"}),
        ((("m.room.member", None),), {"$a", "$b"}),
        ((("m.room.member", None), ("m.room.member", "@a:s")), {"$a", "$b"}),
        ((("m.room.power_levels", ""), ("m.room.member", "@c:s")), {"$pl"}),
        ((("m.room.power_levels", None), ("m.room.create", "")), {"$pl", "$create"}),
        ((("m.room.topic", ""),), set()),
    ],
)
def test_a_callback_sees_what_it_declared_and_no_more(
    wanted: tuple[StateWant, ...], selected: set[str]
) -> None:
    assert set(needs(*wanted).select(STATE).values()) == selected


def test_needs_add_up() -> None:
    a = needs(("m.room.member", "@a:s"))
    b = StateNeeds(frozenset({("m.room.create", "")}), redacted=True)
    assert union([]) == NO_STATE
    assert union([a, NO_STATE, b]) == StateNeeds(
        frozenset({("m.room.member", "@a:s"), ("m.room.create", "")}), redacted=True
    )
    assert a.with_keys([("m.room.member", None)]).keys == {
        ("m.room.member", "@a:s"),
        ("m.room.member", None),
    }
