"""The room-kind tables cover every kind, so a new kind cannot be half added."""

from __future__ import annotations

import pytest

from sferum_shared.rooms import RoomKey, RoomKind, Scope, is_reserved_alias
from synapse_sferum.policy.call_widget import WIDGET_NAMES
from synapse_sferum.policy.room_kinds import ROOM_KINDS, SUBJECT_GROUP_KINDS


@pytest.mark.parametrize("kind", list(RoomKind))
def test_every_kind_has_a_row_and_a_scope(kind: RoomKind) -> None:
    spec = ROOM_KINDS[kind]
    assert isinstance(kind.scope, Scope)
    assert spec.members, "a room nobody is in"
    assert spec.name and spec.topic
    assert spec.moderators is None or spec.moderators in spec.members
    assert is_reserved_alias(RoomKey(kind, "x").alias_localpart())


def test_the_table_has_no_other_rows() -> None:
    assert set(ROOM_KINDS) == set(RoomKind)


def test_call_widgets_open_a_room_with_calls() -> None:
    for kind, spec in ROOM_KINDS.items():
        if spec.call_widget is not None:
            assert ROOM_KINDS[spec.call_widget.joins].call_memberships, kind
            assert WIDGET_NAMES[kind] == spec.call_widget.title


def test_subject_groups_get_class_rooms_only() -> None:
    assert SUBJECT_GROUP_KINDS == (RoomKind.CLASS_CHAT, RoomKind.LESSON)
    assert all(kind.scope is Scope.CLASS for kind in SUBJECT_GROUP_KINDS)
