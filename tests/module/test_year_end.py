"""Year end over the mocked ModuleApi and real SQLite: when a class's every enrollment is
over, the reconcile keeps its rooms read-only with the members it had at the end who have not
left; a pupil who moved on joins the new class's rooms as well."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from unittest import mock

import pytest

from sferum_shared import ManualClock, matrix
from sferum_shared.rooms import CLASS_KINDS, RoomKey, RoomKind
from sferum_shared.vocabulary import WidgetId
from synapse_sferum.policy.provisioning import ARCHIVE_MARK
from synapse_sferum.policy.room_kinds import PLATFORM
from synapse_sferum.roster.oneroster import parse_roster
from tests.module.conftest import TODAY, edited_roster, load_demo, uid
from tests.module.test_provisioner import LINKED, Harness

DAY = 24 * 3600


def roster_after_5a(folder: Path, last_day: date) -> Path:
    """5А's enrollments end on `last_day`; Артём (p-5a-1) is enrolled in 6Б for next year."""

    def edit(name: str, text: str) -> str:
        if name != "enrollments.csv":
            return text
        lines = [
            f"{line.rstrip()}{last_day.isoformat()}\n" if ",5a,school-1," in line else line
            for line in text.splitlines(keepends=True)
        ]
        return "".join(lines) + "e-6b-p-5a-1,,,6b,school-1,p-5a-1,student,false,,\n"

    return edited_roster(folder, edit)


@pytest.fixture
async def school(api: mock.Mock, clock: ManualClock) -> Harness:
    school = Harness(api, clock)
    await load_demo(school.directory, *LINKED)
    return school


async def test_a_class_whose_year_ended_is_kept_read_only_with_its_members(
    school: Harness, clock: ManualClock, tmp_path: Path
) -> None:
    await school.reconcile()
    last_day = school.directory.today() + timedelta(days=1)
    roster = roster_after_5a(tmp_path / "roster", last_day)
    await school.directory.apply_import(parse_roster(roster, TODAY), dry_run=False)
    await school.reconcile()
    chat = await school.room_id(RoomKey(RoomKind.CLASS_CHAT, "5a"))
    news = await school.room_id(RoomKey(RoomKind.CLASS_NEWS, "5a"))
    running = school.rooms.content(chat, matrix.POWER_LEVELS)
    assert running["events_default"] < PLATFORM
    assert school.rooms.content(news, matrix.WIDGETS, WidgetId.CALL)
    pupil, mother, teacher = uid("p-5a-1"), uid("g-volkova"), uid("t-1")
    members_before = {
        key: school.rooms.joined(await school.room_id(RoomKey(key, "5a"))) for key in CLASS_KINDS
    }
    assert {pupil, teacher} <= members_before[RoomKind.CLASS_CHAT]

    clock.advance(2 * DAY)  # the last day passes; the periodic reconcile notices
    school.forget_calls()
    report = await school.reconcile()
    assert report.failures == 0 and report.rooms_created == 0
    for kind in CLASS_KINDS:
        room_id = await school.room_id(RoomKey(kind, "5a"))
        levels = school.rooms.content(room_id, matrix.POWER_LEVELS)
        assert levels["events_default"] == levels["state_default"] == PLATFORM, kind
        assert set(levels["events"].values()) == {PLATFORM}, kind
        assert levels["users"][school.provisioner._bot] == PLATFORM
        assert school.rooms.content(room_id, matrix.NAME)["name"].endswith(ARCHIVE_MARK)
        # t-1 taught only 5А and has left; everyone else who was there stays to read
        assert school.rooms.joined(room_id) == members_before[kind] - {teacher}, kind
    assert school.rooms.content(news, matrix.WIDGETS, WidgetId.CALL) == {}  # no calls
    assert {room for user, room in school.left() if user != teacher} == set()
    assert pupil in school.rooms.joined(await school.room_id(RoomKey(RoomKind.CLASS_CHAT, "6b")))
    assert mother in school.rooms.joined(await school.room_id(RoomKey(RoomKind.PARENTS, "6b")))
    # 6Б goes on as before
    levels_6b = school.rooms.content(
        await school.room_id(RoomKey(RoomKind.CLASS_CHAT, "6b")), matrix.POWER_LEVELS
    )
    assert levels_6b["events_default"] < PLATFORM
