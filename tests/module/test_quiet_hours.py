"""Quiet hours' glue over a mocked ModuleApi and a real SQLite database (docs/changing.md, tier 2).

The push rule itself is Synapse's (tests/module/test_compat.py checks it, and the integration
test pushes through a real pusher); here `compat` is replaced to watch the switching.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from synapse.events import EventBase

from sferum_shared.rooms import RoomKey, RoomKind
from sferum_shared.vocabulary import EventType, Key
from synapse_sferum.module import SferumModule, synapse_clock
from synapse_sferum.policy.quiet import QuietHoursConfig
from synapse_sferum.quiet_hours import QuietHours
from synapse_sferum.state_needs import needs
from synapse_sferum.store import quiet as store
from tests.module.conftest import load_demo, make_event, uid

TEACHER, STAFF, GUARDIAN, PUPIL, TEACHER2 = "t-1", "staff-1", "g-volkova", "p-5a-1", "t-2"
BOT = uid("sferum")
OFFICE = {"days": {d: [["08:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}}


def ms(local: str) -> int:
    """Epoch ms of a Moscow wall-clock time; 2026-09-21 is a Monday."""
    moment = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Europe/Moscow"))
    return int(moment.timestamp() * 1000)


def event(sender: str, room_id: str = "!dm:school.test", **fields: Any) -> EventBase:
    return make_event(sender, room_id, **fields)


def room_state(*joined: str, direct: bool = True, invited: str = "") -> dict[Any, EventBase]:
    create = event(joined[0], type="m.room.create", state_key="", content={})
    if direct:
        create = event(
            joined[0], type="m.room.create", state_key="", content={Key.DIRECT: True}
        )
    state: dict[Any, EventBase] = {("m.room.create", ""): create}
    for user_id in joined:
        state[("m.room.member", user_id)] = event(
            user_id, type="m.room.member", state_key=user_id, content={"membership": "join"}
        )
    if invited:
        state[("m.room.member", invited)] = event(
            joined[0], type="m.room.member", state_key=invited, content={"membership": "invite"}
        )
    return state


class Harness:
    """QuietHours on the main process, with the background work run when the test says."""

    def __init__(self, module: SferumModule, api: mock.Mock, **config: Any):
        self.api = api
        api.worker_app = None
        self.background: list[tuple[Any, tuple[Any, ...]]] = []
        api.run_as_background_process.side_effect = lambda desc, f, *args: self.background.append(
            (f, args)
        )
        self.account_data: dict[str, dict[str, Any]] = {}

        async def get_global(user_id: str, data_type: str) -> Any:
            return self.account_data.get(user_id)

        async def put_global(user_id: str, data_type: str, content: dict[str, Any]) -> None:
            self.account_data[user_id] = content
            await self.quiet.on_account_data_updated(user_id, None, data_type, content)

        api.account_data_manager = mock.Mock(get_global=get_global, put_global=put_global)
        self.quiet = QuietHours(
            api, module.directory, BOT, QuietHoursConfig(**config), synapse_clock(api)
        )
        self.directory = module.directory

    def at(self, local: str) -> None:
        self.api.get_current_time_msec.return_value = ms(local)

    async def set_hours(self, person: str, content: dict[str, Any]) -> None:
        await self.quiet.on_account_data_updated(uid(person), None, EventType.QUIET_HOURS, content)

    async def deliver(self, ev: EventBase, state: dict[Any, EventBase]) -> None:
        """As the module's event dispatch does: with the state the callback declares (and
        what it asks ModuleApi for, from the same room)."""
        self.api.get_room_state.side_effect = lambda room_id, wanted: needs(*wanted).select(state)
        await self.quiet.on_new_event(ev, self.quiet.needed_state(ev).select(state))
        while self.background:
            f, args = self.background.pop(0)
            await f(*args)

    def sent(self) -> list[dict[str, Any]]:
        calls = self.api.create_and_send_event_into_room.await_args_list
        return [c.args[0] for c in calls]

    async def silenced(self) -> set[str]:
        return await self.directory.run("t", store.silenced_users_txn)


@pytest.fixture
def pushes() -> Iterator[tuple[mock.AsyncMock, mock.AsyncMock]]:
    with (
        mock.patch("synapse_sferum.compat.silence_pushes", new_callable=mock.AsyncMock) as off,
        mock.patch("synapse_sferum.compat.restore_pushes", new_callable=mock.AsyncMock) as on,
    ):
        yield off, on


@pytest.fixture
async def h(module: SferumModule, api: mock.Mock) -> Harness:
    await load_demo(module.directory, TEACHER, STAFF, GUARDIAN, PUPIL, TEACHER2)
    return Harness(module, api)


# -- registration ---------------------------------------------------------------------------


def test_registers_callbacks_everywhere_and_the_loop_on_main_only(
    module: SferumModule, api: mock.Mock
) -> None:
    api.looping_background_call.reset_mock()  # the module's own loops, made with it
    api.worker_app = "synapse.app.generic_worker"
    QuietHours(api, module.directory, BOT, QuietHoursConfig(), synapse_clock(api)).register()
    api.register_account_data_callbacks.assert_called()
    api.looping_background_call.assert_not_called()
    api.worker_app = None
    QuietHours(
        api, module.directory, BOT, QuietHoursConfig(check_interval_seconds=7), synapse_clock(api)
    ).register()
    loop = api.looping_background_call.call_args
    assert loop.args[1] == 7000 and loop.kwargs["run_on_all_instances"] is True


# -- switching pushes -----------------------------------------------------------------------


async def test_pushes_go_off_after_hours_and_come_back_on_time(h: Harness, pushes: Any) -> None:
    off, on = pushes
    h.at("2026-09-21 16:59:40")
    await h.set_hours(TEACHER, OFFICE)
    off.assert_not_called()
    # the change 20 s ahead is timed: the 30 s loop would be late
    delay, wake = h.api.delayed_background_call.call_args.args[:2]
    assert delay == 20_100
    h.at("2026-09-21 17:00:00.100")
    await wake()
    off.assert_awaited_once_with(h.api, uid(TEACHER))
    assert await h.silenced() == {uid(TEACHER)}
    await h.quiet.run_schedule()  # nothing new: nothing written twice
    assert off.await_count == 1 and on.await_count == 0
    h.at("2026-09-22 08:00")
    await h.quiet.run_schedule()
    on.assert_awaited_once_with(h.api, uid(TEACHER))
    assert await h.silenced() == set()


async def test_a_restart_gives_back_pushes_silenced_before_it(
    h: Harness, pushes: Any, module: SferumModule, api: mock.Mock
) -> None:
    off, on = pushes
    h.at("2026-09-21 20:00")
    await h.set_hours(TEACHER, OFFICE)
    assert off.await_count == 1
    restarted = Harness(module, api)
    restarted.at("2026-09-22 09:00")
    await restarted.quiet.run_schedule()
    on.assert_awaited_once_with(api, uid(TEACHER))


@pytest.mark.parametrize(
    "content",
    [
        pytest.param({}, id="deleted"),
        pytest.param({**OFFICE, "enabled": False}, id="switched-off"),
        pytest.param({"days": {"mon": [["25:00", "17:00"]]}}, id="invalid"),
    ],
)
async def test_switching_off_gives_pushes_back_at_once(
    h: Harness, pushes: Any, content: dict[str, Any]
) -> None:
    _, on = pushes
    h.at("2026-09-21 20:00")
    await h.set_hours(TEACHER, OFFICE)
    await h.set_hours(TEACHER, content)
    on.assert_awaited_once_with(h.api, uid(TEACHER))
    assert await h.directory.run("t", store.all_schedules_txn) == {}


async def test_only_teachers_and_staff_have_quiet_hours(h: Harness, pushes: Any) -> None:
    off, _ = pushes
    h.at("2026-09-21 20:00")
    for person in (GUARDIAN, PUPIL, "nobody"):
        await h.set_hours(person, OFFICE)
    off.assert_not_called()
    await h.set_hours(STAFF, OFFICE)
    off.assert_awaited_once_with(h.api, uid(STAFF))


async def test_one_failure_does_not_stop_the_others(h: Harness, pushes: Any) -> None:
    off, _ = pushes
    h.at("2026-09-21 10:00")
    await h.set_hours(TEACHER, OFFICE)
    await h.set_hours(STAFF, OFFICE)
    off.side_effect = [RuntimeError("Not a push writer"), None]
    h.at("2026-09-21 20:00")
    await h.quiet.run_schedule()
    assert await h.silenced() == {uid(TEACHER)}  # staff-1 failed first, t-1 went on
    off.side_effect = None
    await h.quiet.run_schedule()
    assert await h.silenced() == {uid(TEACHER), uid(STAFF)}


async def test_switched_off_feature_gives_every_push_back(
    h: Harness, pushes: Any, module: SferumModule, api: mock.Mock
) -> None:
    _, on = pushes
    h.at("2026-09-21 20:00")
    await h.set_hours(TEACHER, OFFICE)
    disabled = Harness(module, api, enabled=False)
    await disabled.quiet.run_schedule()
    on.assert_awaited_once_with(api, uid(TEACHER))


# -- automatic notices ----------------------------------------------------------------------


async def test_one_notice_per_conversation_and_quiet_period(h: Harness, pushes: Any) -> None:
    h.at("2026-09-21 10:00")
    await h.set_hours(TEACHER, OFFICE)
    dm = room_state(uid(GUARDIAN), uid(TEACHER))
    await h.deliver(event(uid(GUARDIAN)), dm)
    assert h.sent() == []  # working hours
    h.at("2026-09-21 20:00")
    for _ in range(3):
        await h.deliver(event(uid(GUARDIAN)), dm)
    assert h.sent() == [
        {
            "type": "m.room.message",
            "room_id": "!dm:school.test",
            "sender": uid(TEACHER),
            "content": {
                "msgtype": "m.notice",
                "body": "Учитель сейчас не на связи. Ответит завтра с 08:00.",
                Key.AUTO_REPLY: True,
            },
        }
    ]
    # another conversation gets its own; the next evening is another period
    await h.deliver(event(uid(PUPIL), "!dm2:school.test"), room_state(uid(PUPIL), uid(TEACHER)))
    h.at("2026-09-22 18:00")
    await h.deliver(event(uid(GUARDIAN)), dm)
    assert [(s["room_id"], s["sender"]) for s in h.sent()] == [
        ("!dm:school.test", uid(TEACHER)),
        ("!dm2:school.test", uid(TEACHER)),
        ("!dm:school.test", uid(TEACHER)),
    ]


async def test_a_notice_lost_in_sending_is_never_doubled(h: Harness, pushes: Any) -> None:
    h.at("2026-09-21 20:00")
    await h.set_hours(TEACHER, OFFICE)
    dm = room_state(uid(GUARDIAN), uid(TEACHER))
    h.api.create_and_send_event_into_room.side_effect = RuntimeError("boom")
    await h.deliver(event(uid(GUARDIAN)), dm)  # logged, not raised
    h.api.create_and_send_event_into_room.side_effect = None
    await h.deliver(event(uid(GUARDIAN)), dm)
    assert len(h.sent()) == 1  # the failed attempt; the claim stands


@pytest.mark.parametrize(
    ("sender", "state", "fields"),
    [
        pytest.param(TEACHER2, room_state(uid(TEACHER2), uid(TEACHER)), {}, id="colleague"),
        pytest.param(
            GUARDIAN, room_state(uid(GUARDIAN), uid(TEACHER), direct=False), {}, id="not-a-dm"
        ),
        pytest.param(
            GUARDIAN, room_state(uid(GUARDIAN), invited=uid(TEACHER)), {}, id="teacher-invited"
        ),
        pytest.param(
            GUARDIAN,
            room_state(uid(GUARDIAN), uid(TEACHER)),
            {"content": {"msgtype": "m.notice", "body": "бот"}},
            id="automatic-message",
        ),
        pytest.param(
            GUARDIAN,
            room_state(uid(GUARDIAN), uid(TEACHER)),
            {"type": "m.reaction", "content": {}},
            id="reaction",
        ),
    ],
)
async def test_no_notice(
    h: Harness, pushes: Any, sender: str, state: dict[Any, EventBase], fields: dict[str, Any]
) -> None:
    h.at("2026-09-21 20:00")
    await h.set_hours(TEACHER, OFFICE)
    await h.deliver(event(uid(sender), **fields), state)
    assert h.sent() == []


async def test_only_the_background_instance_answers(h: Harness, pushes: Any) -> None:
    h.at("2026-09-21 20:00")
    await h.set_hours(TEACHER, OFFICE)
    h.api.should_run_background_tasks.return_value = False
    await h.deliver(event(uid(GUARDIAN)), room_state(uid(GUARDIAN), uid(TEACHER)))
    assert h.sent() == []


async def test_a_failing_directory_never_breaks_delivery(h: Harness, pushes: Any) -> None:
    with mock.patch.object(h.directory, "get_member", side_effect=RuntimeError("db down")):
        await h.deliver(event(uid(GUARDIAN)), room_state(uid(GUARDIAN), uid(TEACHER)))
        await h.set_hours(TEACHER, OFFICE)
        await h.quiet.run_schedule()
    assert h.sent() == []


# -- the bot's chat -------------------------------------------------------------------------


def bot_room(person: str, *others: str) -> dict[Any, EventBase]:
    return room_state(uid(person), BOT, *others, direct=False)


async def command(h: Harness, person: str, body: str, *others: str) -> list[str]:
    before = len(h.sent())
    ev = event(uid(person), "!bot:school.test", content={"msgtype": "m.text", "body": body})
    await h.deliver(ev, bot_room(person, *others))
    replies = h.sent()[before:]
    assert all(r["sender"] == BOT and r["content"]["msgtype"] == "m.notice" for r in replies)
    return [r["content"]["body"] for r in replies]


async def test_commands_write_account_data_and_answer(h: Harness, pushes: Any) -> None:
    off, on = pushes
    h.at("2026-09-26 12:00")  # Saturday
    [reply] = await command(h, TEACHER, "!часы пн-пт 08:00-17:00")
    assert reply.startswith("Сохранено. Рабочие часы: пн–пт 08:00–17:00 (Europe/Moscow).")
    assert h.account_data[uid(TEACHER)] == {
        "enabled": True,
        "timezone": "Europe/Moscow",
        **OFFICE,
    }
    off.assert_awaited_once_with(h.api, uid(TEACHER))
    [reply] = await command(h, TEACHER, "!hours off")
    assert h.account_data[uid(TEACHER)]["enabled"] is False
    on.assert_awaited_once_with(h.api, uid(TEACHER))
    [reply] = await command(h, TEACHER, "!часы")
    assert reply.startswith("Тихие часы выключены")


async def test_bad_commands_and_strangers_are_answered(h: Harness, pushes: Any) -> None:
    h.at("2026-09-26 12:00")
    [reply] = await command(h, TEACHER, "!часы пн-пт 25:00-17:00")
    assert reply.startswith("Не получилось: «25:00-17:00»: «25:00» — это не время ЧЧ:ММ")
    [reply] = await command(h, GUARDIAN, "!часы пн-пт 08:00-17:00")
    assert reply == "Рабочие часы задают только учителя и сотрудники школы."
    assert h.account_data == {}
    assert await command(h, TEACHER, "!часы пн-пт 08:00-17:00", uid(TEACHER2)) == []
    assert await command(h, TEACHER, "просто сообщение") == []


async def test_the_bot_joins_a_teachers_room_with_it(h: Harness, pushes: Any) -> None:
    async def invite(person: str, room_id: str) -> None:
        ev = event(
            uid(person),
            room_id,
            type="m.room.member",
            state_key=BOT,
            content={"membership": "invite"},
        )
        await h.deliver(ev, room_state(uid(person), invited=BOT, direct=True))

    await invite(GUARDIAN, "!g:school.test")
    await h.directory.record_room(RoomKey(RoomKind.STAFF, "school-1"), "!staff:school.test")
    await invite(TEACHER, "!staff:school.test")
    h.api.update_room_membership.assert_not_called()
    await invite(TEACHER, "!t:school.test")
    h.api.update_room_membership.assert_awaited_once_with(BOT, BOT, "!t:school.test", "join")
    assert h.sent()[-1]["content"]["body"].startswith("Рабочие часы. В нерабочее время")
