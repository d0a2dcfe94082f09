"""What of a room's state an event callback reads, declared per event.

Synapse hands every `check_event_allowed` and `on_new_event` callback the room's whole state,
loading all of it for every event once any module registers one: O(members) per message in a
school space of 1,500. Our callbacks read a handful of keys, so each declares them for the
event at hand (`needed_state(event) -> StateNeeds`) and `compat.register_event_callbacks`
loads just those. Plain data, no Synapse: the declarations are tested by tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

import attrs

StateKey = tuple[str, str]
# A state key of None asks for every state key of that type (as Synapse's StateFilter).
StateWant = tuple[str, str | None]
V = TypeVar("V")


@attrs.frozen
class StateNeeds:
    """The (type, state_key) entries a callback reads; `redacted`: also the entry of the event
    that the event redacts, if that is a state event (a redaction of current state is judged
    as emptying it)."""

    keys: frozenset[StateWant] = frozenset()
    redacted: bool = False

    def __or__(self, other: StateNeeds) -> StateNeeds:
        return StateNeeds(self.keys | other.keys, self.redacted or other.redacted)

    def with_keys(self, keys: Iterable[StateWant]) -> StateNeeds:
        return StateNeeds(self.keys | frozenset(keys), self.redacted)

    def wants(self, key: StateKey) -> bool:
        return key in self.keys or (key[0], None) in self.keys

    def select(self, state: Mapping[StateKey, V]) -> dict[StateKey, V]:
        """The entries of `state` that were asked for: each callback sees what it declared
        and no more, so a key read but not declared shows up as missing in the tests."""
        return {key: value for key, value in state.items() if self.wants(key)}


NO_STATE = StateNeeds()


def needs(*keys: StateWant) -> StateNeeds:
    return StateNeeds(frozenset(keys))


def union(all_needs: Iterable[StateNeeds]) -> StateNeeds:
    result = NO_STATE
    for one in all_needs:
        result = result | one
    return result
