"""Reconciles over the mocked ModuleApi and real SQLite: the Provisioner makes the rooms the
directory's plan asks for, once, and afterwards sends only what closes a gap.

Synapse's rooms are a small fake (`Rooms`): state by (type, state key), changed by the calls
the provisioner makes, so that a second run sees what the first one left.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any
from unittest import mock

import attrs
import pytest
from synapse.module_api import UserID
from synapse.module_api.errors import SynapseError

from sferum_shared import ManualClock, matrix
from sferum_shared.rooms import RoomKey, RoomKind, Scope
from sferum_shared.vocabulary import EventType, WidgetId
from synapse_sferum import policy
from synapse_sferum.directory import guardianship_pairs
from synapse_sferum.lifecycle import Departures
from synapse_sferum.provisioner import Provisioner, ReconcileReport
from synapse_sferum.roster.oneroster import parse_roster
from synapse_sferum.service import DirectoryService
from synapse_sferum.views import org_views
from tests.module.conftest import (
    SERVER,
    TODAY,
    load_demo,
    roster_with_volkov_in_6b,
    roster_without_novikova,
    sferum_config,
    uid,
)

BOT = uid("sferum")
CALLS = "https://calls.school.test"
LINKED = ("t-1", "t-2", "staff-1", "p-5a-1", "g-volkova", "p-6b-1", "g-kozlova")


@attrs.define
class StateEvent:
    sender: str
    content: dict[str, Any]

    @property
    def membership(self) -> Any:
        return self.content.get("membership")


class Rooms:
    """Synapse's rooms, as far as the provisioner reads and changes them."""

    def __init__(self, api: mock.Mock):
        self.state: dict[str, dict[tuple[str, str], StateEvent]] = {}
        self.aliases: dict[str, str] = {}
        self.refuse_alias: str | None = None  # creating the room with this alias fails
        self._ids = itertools.count(1)
        api.create_room.side_effect = self.create_room
        api.get_room_state.side_effect = self.get_room_state
        api.create_and_send_event_into_room.side_effect = self.send
        api.update_room_membership.side_effect = self.update_membership
        api.lookup_room_alias.side_effect = self.lookup_room_alias

    async def create_room(
        self, user_id: str, config: dict[str, Any], ratelimit: bool, **kwargs: Any
    ) -> tuple[str, str | None]:
        alias = config.get("room_alias_name")
        if alias is not None and alias == self.refuse_alias:
            raise RuntimeError(f"cannot make #{alias}")
        room_id = f"!room{next(self._ids)}:{SERVER}"
        state = self.state[room_id] = {}
        state["m.room.create", ""] = StateEvent(user_id, config["creation_content"])
        state["m.room.member", user_id] = StateEvent(user_id, {"membership": "join"})
        state["m.room.power_levels", ""] = StateEvent(
            user_id, config["power_level_content_override"]
        )
        if "name" in config:
            state[matrix.NAME, ""] = StateEvent(user_id, {"name": config["name"]})
        if "topic" in config:  # as Synapse 1.163 writes it, with the extensible `m.topic`
            topic = {"topic": config["topic"], "m.topic": [{"body": config["topic"]}]}
            state[matrix.TOPIC, ""] = StateEvent(user_id, topic)
        for event in config["initial_state"]:
            state[event["type"], event.get("state_key", "")] = StateEvent(
                user_id, event["content"]
            )
        if alias is None:
            return room_id, None
        self.aliases[f"#{alias}:{SERVER}"] = room_id
        return room_id, f"#{alias}:{SERVER}"

    async def get_room_state(
        self, room_id: str, event_filter: list[tuple[str, str | None]] | None = None
    ) -> dict[tuple[str, str], StateEvent]:
        return {
            (event_type, state_key): event
            for (event_type, state_key), event in self.state[room_id].items()
            if event_filter is None
            or any(t == event_type and k in (None, state_key) for t, k in event_filter)
        }

    async def send(self, event: dict[str, Any]) -> Any:
        self.state[event["room_id"]][event["type"], event["state_key"]] = StateEvent(
            event["sender"], event["content"]
        )
        return mock.Mock()

    async def update_membership(
        self, sender: str, target: str, room_id: str, membership: str, **kwargs: Any
    ) -> Any:
        self.state[room_id]["m.room.member", target] = StateEvent(
            sender, {"membership": membership}
        )
        return mock.Mock()

    async def lookup_room_alias(self, alias: str) -> tuple[str, list[str]]:
        if alias not in self.aliases:
            raise SynapseError(404, "Room alias not found")
        return self.aliases[alias], [SERVER]

    def content(self, room_id: str, event_type: str, state_key: str = "") -> Any:
        event = self.state[room_id].get((event_type, state_key))
        return event.content if event is not None else None

    def joined(self, room_id: str) -> set[str]:
        return {
            user_id
            for (event_type, user_id), event in self.state[room_id].items()
            if event_type == "m.room.member" and event.membership == "join"
        }


class Harness:
    """A Provisioner over the demo school, run to the end when the test says."""

    def __init__(self, api: mock.Mock, clock: ManualClock, grace_hours: int | None = None):
        self.api = api
        self.rooms = Rooms(api)
        api.public_baseurl = f"https://{SERVER}/"
        # Background processes run as tasks on the test's loop, side by side as in Synapse.
        self.background: list[asyncio.Task[Any]] = []
        api.run_as_background_process.side_effect = lambda desc, f, *args: self.background.append(
            asyncio.ensure_future(f(*args))
        )
        api.sleep.side_effect = asyncio.sleep
        self.directory = DirectoryService(api, sferum_config(), clock)
        departures = (
            None if grace_hours is None else Departures(api, self.directory, clock, grace_hours)
        )
        self.provisioner = Provisioner(
            api, self.directory, BOT, frozenset(), clock, departures, calls_url=CALLS
        )

    async def reconcile(self, check_names_of: tuple[str, ...] = ()) -> ReconcileReport:
        self.provisioner.request(check_names_of)
        while self.background:
            await self.background.pop(0)
        return self.provisioner.last_report

    async def plans(self) -> dict[RoomKey, policy.RoomPlan]:
        """The directory's plan now, as policy computes it."""
        snapshot = await self.directory.snapshot()
        links = await self.directory.all_links()
        return {
            plan.key: plan
            for org in org_views(snapshot, guardianship_pairs(snapshot.people), TODAY)
            for plan in policy.desired_rooms(org, links)
        }

    async def room_id(self, key: RoomKey) -> str:
        room_id = await self.directory.room_id(key)
        assert room_id is not None, key
        return room_id

    def forget_calls(self) -> None:
        for method in (
            self.api.create_room,
            self.api.create_and_send_event_into_room,
            self.api.update_room_membership,
            self.api.set_displayname,
        ):
            method.reset_mock()

    def sent(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        return [
            (e["room_id"], e["type"], e["state_key"], e["content"])
            for e in (c.args[0] for c in self.api.create_and_send_event_into_room.await_args_list)
        ]

    def left(self) -> set[tuple[str, str]]:
        """(user, room) of every removal the provisioner made."""
        return {
            (target, room_id)
            for sender, target, room_id, membership in (
                c.args for c in self.api.update_room_membership.await_args_list
            )
            if membership == "leave"
        }


@pytest.fixture
async def school(api: mock.Mock, clock: ManualClock) -> Harness:
    school = Harness(api, clock)
    await load_demo(school.directory, *LINKED)
    return school


def kind_content(key: RoomKey) -> dict[str, str]:
    """What the room says it is: its kind, its school, and its class or pupil."""
    scope = {Scope.CLASS: {"class": key.scope_id}, Scope.PERSON: {"person": key.scope_id}}
    return {"kind": key.kind.value, "org": "school-1", **scope.get(key.kind.scope, {})}


async def test_a_first_reconcile_makes_each_planned_room_once_as_planned(
    school: Harness, api: mock.Mock
) -> None:
    plans = await school.plans()
    report = await school.reconcile()
    assert report.rooms_created == len(plans) and report.failures == 0
    assert api.create_room.await_count == len(plans)
    assert len({await school.room_id(key) for key in plans}) == len(plans)
    for key, plan in plans.items():
        room_id = await school.room_id(key)
        state = school.rooms
        assert state.content(room_id, EventType.ROOM_KIND) == kind_content(key), key
        assert state.content(room_id, matrix.NAME) == {"name": plan.name}
        assert state.content(room_id, matrix.TOPIC) == {"topic": plan.topic}
        assert state.content(room_id, "m.room.power_levels") == policy.power_levels(
            plan, BOT, None
        )
        assert state.content(room_id, "m.room.create")["m.federate"] is plan.federate
        assert state.joined(room_id) == plan.members | {BOT}, key
        assert await school.directory.planned_members(room_id) == plan.members
    assert {
        c.kwargs["creator_join_profile"]["displayname"] for c in api.create_room.await_args_list
    } == {"Школьная платформа"}


async def test_a_room_is_made_with_its_state_and_only_what_names_it_is_sent_after(
    school: Harness,
) -> None:
    """Creation carries the room's whole planned state in one batch; sent afterwards are only
    the spaces' links to their rooms and the call widget of a room that calls in itself, which
    name room IDs not known before the room exists."""
    plans = await school.plans()
    await school.reconcile()
    expected = [
        (await school.room_id(plan.parent), matrix.SPACE_CHILD, await school.room_id(key))
        for key, plan in plans.items()
        if plan.parent is not None
    ] + [
        (await school.room_id(key), matrix.WIDGETS, WidgetId.CALL)
        for key, plan in plans.items()
        if plan.call == key
    ]
    sent = [
        (room_id, event_type, state_key) for room_id, event_type, state_key, _ in school.sent()
    ]
    assert sorted(sent) == sorted(expected)


async def test_a_second_reconcile_with_nothing_changed_sends_nothing(
    school: Harness, api: mock.Mock
) -> None:
    await school.reconcile()
    school.forget_calls()
    report = await school.reconcile()
    assert report == ReconcileReport()
    api.create_room.assert_not_awaited()
    api.create_and_send_event_into_room.assert_not_awaited()
    api.update_room_membership.assert_not_awaited()


async def test_a_pupil_moved_out_of_a_class_leaves_its_rooms_and_joins_the_new_ones(
    school: Harness, tmp_path: Path
) -> None:
    await school.reconcile()
    before = await school.plans()
    pupil, mother = uid("p-5a-1"), uid("g-volkova")
    moved = roster_with_volkov_in_6b(tmp_path / "roster")
    await school.directory.apply_import(parse_roster(moved, TODAY), dry_run=False)
    school.forget_calls()
    report = await school.reconcile()
    after = await school.plans()
    assert report.failures == 0 and report.rooms_created == 0
    homeroom_5a = {key for key in before if key.scope_id == "5a"}
    expected = {
        (user, await school.room_id(key))
        for key in homeroom_5a
        for user in (pupil, mother)
        if user in before[key].members and user not in after[key].members
    }
    assert {user for user, _ in expected} == {pupil, mother}
    assert school.left() == expected
    assert report.removed == len(expected)
    for key in homeroom_5a:
        assert pupil not in school.rooms.joined(await school.room_id(key)), key
    for user, key in (
        (pupil, RoomKey(RoomKind.CLASS_CHAT, "6b")),
        (mother, RoomKey(RoomKind.PARENTS, "6b")),
    ):
        assert user in school.rooms.joined(await school.room_id(key)), key
    # A subject group is a class of its own: the pupil is still in 5А's English group.
    group = await school.room_id(RoomKey(RoomKind.CLASS_CHAT, "5a-eng1"))
    assert pupil in school.rooms.joined(group)


@pytest.mark.parametrize(
    ("event_type", "changed"),
    [
        (matrix.NAME, {"name": "Болталка"}),
        (matrix.TOPIC, {"topic": ""}),
        (EventType.ROOM_KIND, {}),  # redacted
        ("m.room.power_levels", None),  # a teacher gave themselves 100
    ],
)
async def test_state_changed_by_someone_else_is_mended(
    school: Harness, event_type: str, changed: dict[str, Any] | None
) -> None:
    await school.reconcile()
    key = RoomKey(RoomKind.CLASS_CHAT, "5a")
    room_id = await school.room_id(key)
    wanted = school.rooms.content(room_id, event_type)
    if changed is None:
        changed = {**wanted, "users": {**wanted["users"], uid("t-1"): 100}}
    school.rooms.state[room_id][event_type, ""] = StateEvent(uid("t-1"), changed)
    school.forget_calls()
    report = await school.reconcile()
    assert school.sent() == [(room_id, event_type, "", wanted)]
    assert report == ReconcileReport(state_updates=1)
    assert school.rooms.state[room_id][event_type, ""].sender == BOT


async def test_a_room_that_fails_is_counted_and_the_others_are_made(school: Harness) -> None:
    failing = RoomKey(RoomKind.CLASS_CHAT, "6b")
    school.rooms.refuse_alias = failing.alias_localpart()
    plans = await school.plans()
    report = await school.reconcile()
    assert report.failures == 1
    assert report.rooms_created == len(plans) - 1
    assert await school.directory.room_id(failing) is None
    for key in plans.keys() - {failing}:
        assert school.rooms.joined(await school.room_id(key)) == plans[key].members | {BOT}
    # The next run makes the missing room, and only that.
    school.rooms.refuse_alias = None
    school.forget_calls()
    report = await school.reconcile()
    assert report.failures == 0 and report.rooms_created == 1
    [made] = school.api.create_room.await_args_list
    [name] = [e["content"] for e in made.args[1]["initial_state"] if e["type"] == matrix.NAME]
    assert name == {"name": plans[failing].name}


async def test_a_membership_that_fails_is_counted_and_the_others_are_made(
    school: Harness, api: mock.Mock
) -> None:
    refuse = uid("g-kozlova")
    update = school.rooms.update_membership

    async def update_membership(sender: str, target: str, *args: Any) -> Any:
        if target == refuse:
            raise SynapseError(403, "no")
        return await update(sender, target, *args)

    api.update_room_membership.side_effect = update_membership
    plans = await school.plans()
    report = await school.reconcile()
    rooms_of_kozlova = [key for key, plan in plans.items() if refuse in plan.members]
    assert rooms_of_kozlova
    assert report.failures == len(rooms_of_kozlova)
    for key, plan in plans.items():
        assert school.rooms.joined(await school.room_id(key)) == plan.members - {refuse} | {BOT}


async def test_display_names_follow_the_roster(school: Harness, api: mock.Mock) -> None:
    teacher, stranger = uid("t-1"), uid("stranger")
    profiles = {"t-1": "Марина"}
    api.get_profile_for_user.side_effect = lambda localpart: mock.Mock(
        display_name=profiles.get(localpart)
    )
    report = await school.reconcile(check_names_of=(teacher, stranger))
    member = await school.directory.get_member(teacher)
    assert member is not None
    expected = policy.expected_display_name(member)
    api.set_displayname.assert_awaited_once_with(UserID.from_string(teacher), expected)
    assert report.state_updates >= 1
    # Asked again with the right name in place, nothing is set; nor for unchecked accounts.
    profiles["t-1"] = expected
    school.forget_calls()
    await school.reconcile(check_names_of=(teacher,))
    await school.reconcile()
    api.set_displayname.assert_not_awaited()


async def test_a_display_name_that_fails_is_counted_retried_and_stops_nothing(
    school: Harness, api: mock.Mock
) -> None:
    """One profile Synapse cannot read must not cost the other names, or the rooms after them."""
    failing, teacher = uid("t-1"), uid("t-2")

    async def profile(localpart: str) -> mock.Mock:
        if localpart == "t-1":
            raise RuntimeError("boom")
        return mock.Mock(display_name=None)

    api.get_profile_for_user.side_effect = profile
    plans = await school.plans()
    report = await school.reconcile(check_names_of=(failing, teacher))
    assert report.failures == 1
    assert report.rooms_created == len(plans)
    [(args, _)] = api.set_displayname.await_args_list
    assert args[0] == UserID.from_string(teacher)
    # The next run checks the one that failed again.
    api.get_profile_for_user.side_effect = lambda localpart: mock.Mock(display_name=None)
    school.forget_calls()
    report = await school.reconcile()
    assert report.failures == 0
    [(args, _)] = api.set_displayname.await_args_list
    assert args[0] == UserID.from_string(failing)


async def test_a_deactivation_that_fails_is_counted_and_the_rooms_are_still_made(
    api: mock.Mock, clock: ManualClock, tmp_path: Path
) -> None:
    """One account Synapse cannot deactivate must not stop provisioning for everyone."""
    school = Harness(api, clock, grace_hours=0)
    await load_demo(school.directory, *LINKED, "p-5a-4")
    left = roster_without_novikova(tmp_path / "roster")
    await school.directory.apply_import(parse_roster(left, TODAY), dry_run=False)
    handler = api._hs.get_deactivate_account_handler.return_value
    handler.deactivate_account = mock.AsyncMock(side_effect=RuntimeError("boom"))
    plans = await school.plans()
    report = await school.reconcile()
    assert (report.deactivated, report.failures) == (0, 1)
    assert report.rooms_created == len(plans)
    handler.deactivate_account.side_effect = None
    report = await school.reconcile()
    assert (report.deactivated, report.failures) == (1, 0)
