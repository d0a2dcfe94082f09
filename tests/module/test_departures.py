"""People deleted from the roster, over the mocked ModuleApi and real SQLite: their account is
shut at once (the account validity callback) and deactivated only after the grace period, which
a roster that brings them back cancels."""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from sferum_shared import ManualClock
from synapse_sferum.access import Gatekeeper
from synapse_sferum.lifecycle import HOUR_MS, Departures
from synapse_sferum.roster.oneroster import parse_roster
from synapse_sferum.service import DirectoryService
from tests.module.conftest import (
    DEMO,
    TODAY,
    edited_roster,
    load_demo,
    roster_without_novikova,
    sferum_config,
    uid,
)

LEAVER, STAYER = "p-5a-4", "p-5a-1"


class School:
    """The demo school's directory, its gatekeeper and its departures."""

    def __init__(
        self, api: mock.Mock, database: sqlite3.Connection, clock: ManualClock, hours: int
    ):
        config = sferum_config(provisioning={"enabled": False, "deactivate_after_hours": hours})
        self.database = database
        self.clock = clock
        self.grace_seconds = hours * HOUR_MS / 1000
        self.directory = DirectoryService(api, config, clock)
        self.gate = Gatekeeper(api, config, self.directory)
        self.departures = Departures(api, self.directory, clock, hours)
        self.deactivate = mock.AsyncMock()
        api._hs.get_deactivate_account_handler.return_value.deactivate_account = self.deactivate

    async def import_roster(self, folder: Path) -> None:
        await self.directory.apply_import(parse_roster(folder, TODAY), dry_run=False)

    def departed(self) -> list[Any]:
        return self.database.execute(
            "SELECT person_id, user_id, since_ts FROM sferum_departures"
        ).fetchall()

    def deactivated(self) -> list[str]:
        return [c.args[0] for c in self.deactivate.await_args_list]


@pytest.fixture
def school(api: mock.Mock, database: sqlite3.Connection, clock: ManualClock) -> School:
    return School(api, database, clock, hours=24)


@pytest.mark.parametrize("hours", [1, 24, 72])
async def test_a_leaver_is_shut_at_once_and_deactivated_after_the_grace_period(
    api: mock.Mock, database: sqlite3.Connection, clock: ManualClock, tmp_path: Path, hours: int
) -> None:
    school = School(api, database, clock, hours)
    await load_demo(school.directory, LEAVER, STAYER)
    assert await school.departures.deactivate_due() == (0, 0)
    assert school.departed() == []
    await school.import_roster(roster_without_novikova(tmp_path / "roster"))
    assert await school.gate.is_user_expired(uid(LEAVER)) is True
    assert await school.gate.is_user_expired(uid(STAYER)) is None
    # The first run after the import notes the departure; the grace period counts from there.
    noticed = clock.ms()
    assert await school.departures.deactivate_due() == (0, 0)
    assert school.departed() == [(LEAVER, uid(LEAVER), noticed)]
    clock.advance(school.grace_seconds - 1)
    assert await school.departures.deactivate_due() == (0, 0)
    assert school.deactivated() == []
    clock.advance(1)
    assert await school.departures.deactivate_due() == (1, 0)
    assert school.deactivated() == [uid(LEAVER)]
    assert school.deactivate.await_args.kwargs == {
        "erase_data": False,
        "requester": mock.ANY,
        "by_admin": True,
    }
    # The link goes with the account: a pupil who comes back later gets a new one.
    assert await school.directory.person_for_user(uid(LEAVER)) is None
    assert await school.directory.user_for_person(STAYER) == uid(STAYER)
    assert school.departed() == []
    clock.advance(school.grace_seconds)
    assert await school.departures.deactivate_due() == (0, 0)
    assert school.deactivated() == [uid(LEAVER)]


async def test_a_leaver_who_comes_back_in_time_keeps_the_account(
    school: School, tmp_path: Path
) -> None:
    """A roster exported with a pupil missing by mistake, then mended."""
    await load_demo(school.directory, LEAVER)
    await school.import_roster(roster_without_novikova(tmp_path / "roster"))
    await school.departures.deactivate_due()
    school.clock.advance(school.grace_seconds - 60)
    await school.import_roster(DEMO)
    assert await school.gate.is_user_expired(uid(LEAVER)) is None
    assert await school.departures.deactivate_due() == (0, 0)
    assert school.departed() == []
    school.clock.advance(school.grace_seconds)
    assert await school.departures.deactivate_due() == (0, 0)
    assert school.deactivated() == []
    assert await school.directory.person_for_user(uid(LEAVER)) == LEAVER


async def test_leaving_again_starts_a_new_grace_period(school: School, tmp_path: Path) -> None:
    await load_demo(school.directory, LEAVER)
    without = roster_without_novikova(tmp_path / "roster")
    await school.import_roster(without)
    await school.departures.deactivate_due()
    school.clock.advance(school.grace_seconds / 2)
    await school.import_roster(DEMO)
    await school.departures.deactivate_due()
    school.clock.advance(school.grace_seconds / 4)
    await school.import_roster(without)
    await school.departures.deactivate_due()
    school.clock.advance(school.grace_seconds * 3 / 4)  # a full period since the first leaving
    assert await school.departures.deactivate_due() == (0, 0)
    school.clock.advance(school.grace_seconds / 4)
    assert await school.departures.deactivate_due() == (1, 0)
    assert school.deactivated() == [uid(LEAVER)]


async def test_a_deactivation_that_fails_is_tried_again_on_the_next_run(
    school: School, tmp_path: Path
) -> None:
    await load_demo(school.directory, LEAVER)
    await school.import_roster(roster_without_novikova(tmp_path / "roster"))
    await school.departures.deactivate_due()
    school.clock.advance(school.grace_seconds)
    school.deactivate.side_effect = RuntimeError("the database went away")
    assert await school.departures.deactivate_due() == (0, 1)
    assert await school.directory.person_for_user(uid(LEAVER)) == LEAVER
    assert [person for person, _, _ in school.departed()] == [LEAVER]
    school.deactivate.side_effect = None
    assert await school.departures.deactivate_due() == (1, 0)
    assert school.departed() == []


def roster_with_end(folder: Path, enrollment: str, end: date) -> Path:
    """The demo roster with one enrollment's endDate (its last day) set."""

    def edit(name: str, text: str) -> str:
        if name != "enrollments.csv":
            return text
        lines = text.splitlines(keepends=True)
        return "".join(
            f"{line.rstrip(chr(10))}{end.isoformat()}\n"
            if line.startswith(f"{enrollment},")
            else line
            for line in lines
        )

    return edited_roster(folder, edit)


async def test_a_pupil_whose_every_enrollment_ended_leaves_the_day_after(
    school: School, tmp_path: Path
) -> None:
    """The roster's endDate is the last day: the account works through it, is shut from the
    next day (by the school's date, not the import's), and is deactivated after the grace
    period, the same way as leaving the roster."""
    await load_demo(school.directory, LEAVER, STAYER)
    today = school.directory.today()
    last_day = today + timedelta(days=1)
    await school.import_roster(roster_with_end(tmp_path / "roster", f"e-5a-{LEAVER}", last_day))
    for _ in range(2):  # today, and the last day itself
        assert await school.gate.is_user_expired(uid(LEAVER)) is None
        assert await school.departures.deactivate_due() == (0, 0)
        assert school.departed() == []
        school.clock.advance(24 * 3600)
    assert school.directory.today() == last_day + timedelta(days=1)
    assert await school.gate.is_user_expired(uid(LEAVER)) is True
    assert await school.gate.is_user_expired(uid(STAYER)) is None
    noticed = school.clock.ms()
    assert await school.departures.deactivate_due() == (0, 0)
    assert school.departed() == [(LEAVER, uid(LEAVER), noticed)]
    school.clock.advance(school.grace_seconds)
    assert await school.departures.deactivate_due() == (1, 0)
    assert school.deactivated() == [uid(LEAVER)]


async def test_a_new_enrollment_brings_a_pupil_back_within_the_grace_period(
    school: School, tmp_path: Path
) -> None:
    """Next year's roster arrives after the old enrollment ended: the pupil stays."""
    await load_demo(school.directory, LEAVER)
    yesterday = school.directory.today() - timedelta(days=1)
    await school.import_roster(roster_with_end(tmp_path / "ended", f"e-5a-{LEAVER}", yesterday))
    assert await school.gate.is_user_expired(uid(LEAVER)) is True
    await school.departures.deactivate_due()
    assert [person for person, _, _ in school.departed()] == [LEAVER]
    await school.import_roster(DEMO)  # the enrollment without an end again
    assert await school.gate.is_user_expired(uid(LEAVER)) is None
    school.clock.advance(school.grace_seconds)
    assert await school.departures.deactivate_due() == (0, 0)
    assert school.departed() == []
