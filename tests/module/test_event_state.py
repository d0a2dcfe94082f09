"""What each event callback declares it reads of the room's state (state_needs, compat's
dispatch loads only that): nothing for a plain message, a handful of keys otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from synapse_sferum.access import event_check_needs
from synapse_sferum.invites import codes_state_needs
from synapse_sferum.quiet_hours import quiet_state_needs
from synapse_sferum.state_needs import NO_STATE, StateNeeds, needs
from tests.module.conftest import make_event, uid

BOT = uid("sferum")
ALL_MEMBERS = ("m.room.member", None)
CREATE = ("m.room.create", "")


def text(body: str, msgtype: str = "m.text", **extra: Any) -> dict[str, Any]:
    return {"type": "m.room.message", "content": {"msgtype": msgtype, "body": body, **extra}}


def state(event_type: str, state_key: str, **content: Any) -> dict[str, Any]:
    return {"type": event_type, "state_key": state_key, "content": content}


POLL = "org.matrix.msc3381.poll.start"
POLL_END = "org.matrix.msc3381.poll.end"


@pytest.mark.parametrize(
    ("fields", "wanted"),
    [
        (text("Домашнее задание"), NO_STATE),
        ({"type": "m.sticker", "content": {}}, NO_STATE),
        ({"type": POLL, "content": {}}, needs(("m.room.power_levels", ""))),
        ({"type": POLL_END, "content": {}}, needs(("m.room.power_levels", ""))),
        (state(POLL, "x"), NO_STATE),  # a state event of that type is judged as state
        (state("m.room.member", uid("p"), membership="join"), needs(("m.room.member", uid("p")))),
        (state("m.room.power_levels", ""), NO_STATE),
        (state("m.room.avatar", "", url="mxc://s/x"), NO_STATE),
        ({"type": "m.room.redaction", "content": {"redacts": "$x"}}, StateNeeds(redacted=True)),
    ],
)
def test_the_gatekeeper_reads_a_members_entry_the_levels_or_the_redacted_state(
    fields: dict[str, Any], wanted: StateNeeds
) -> None:
    assert event_check_needs(make_event(uid("t-1"), **fields)) == wanted


@pytest.mark.parametrize(
    ("fields", "wanted"),
    [
        (text("коды 5А"), needs(ALL_MEMBERS)),
        (text("коды"), needs(ALL_MEMBERS)),  # answered with the help text
        (text("Добрый вечер"), NO_STATE),
        ({"type": "m.room.message", "content": {"body": 5}}, NO_STATE),
        ({"type": "m.sticker", "content": {"body": "коды 5А"}}, NO_STATE),
        (state("m.room.message", "", body="коды 5А"), NO_STATE),
    ],
)
def test_invite_codes_read_the_members_for_a_command_alone(
    fields: dict[str, Any], wanted: StateNeeds
) -> None:
    assert codes_state_needs(make_event(uid("t-1"), **fields)) == wanted


@pytest.mark.parametrize(
    ("fields", "wanted"),
    [
        (text("Добрый вечер"), needs(CREATE)),
        ({"type": "m.room.encrypted", "content": {}}, needs(CREATE)),
        (text("!часы пн-пт 08:00-17:00"), needs(ALL_MEMBERS, CREATE)),
        (text("  !HOURS off"), needs(ALL_MEMBERS, CREATE)),
        (text("Ушла домой", "m.notice"), NO_STATE),
        (text("Ушла домой", **{"ru.sferum.auto_reply": True}), NO_STATE),
        (state("m.room.member", BOT, membership="invite"), needs(ALL_MEMBERS)),
        (state("m.room.member", BOT, membership="join"), NO_STATE),
        (state("m.room.member", uid("p"), membership="invite"), NO_STATE),
        (state("m.room.topic", "", topic="x"), NO_STATE),
        ({"type": "m.reaction", "content": {}}, NO_STATE),
    ],
)
def test_quiet_hours_read_whether_a_room_is_direct_and_members_only_when_asked(
    fields: dict[str, Any], wanted: StateNeeds
) -> None:
    assert quiet_state_needs(make_event(uid("g-volkova"), **fields), BOT) == wanted
