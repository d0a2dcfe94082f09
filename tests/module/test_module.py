"""The module's glue over a mocked ModuleApi and a real SQLite database (docs/changing.md, tier 2).
"""

from __future__ import annotations

import io
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from synapse.module_api import NOT_SPAM
from synapse.module_api.errors import Codes

from sferum_shared.model import RosterError
from sferum_shared.rooms import RoomKey, RoomKind
from sferum_shared.vocabulary import Key
from synapse_sferum.accounts import AccountRequestError
from synapse_sferum.module import SferumModule
from synapse_sferum.roster.oneroster import parse_roster
from tests.module.conftest import (
    DEMO,
    NOW_MS,
    SERVER,
    TODAY,
    done,
    edited_roster,
    load_demo,
    roster_with_volkov_in_6b,
    roster_without_novikova,
    uid,
)


def refused(result: Any) -> str:
    assert isinstance(result, tuple), result
    code, fields = result
    assert code == Codes.FORBIDDEN
    reason: str = fields[Key.REASON]
    return reason


async def test_import_is_applied_once_and_reimport_writes_nothing(module: SferumModule) -> None:
    change = parse_roster(DEMO, TODAY)
    first = await module.directory.apply_import(change, dry_run=False)
    assert first.counts["people"].created == 22
    again = await module.directory.apply_import(change, dry_run=False)
    assert not again.wrote_anything


async def test_dry_run_writes_nothing(module: SferumModule) -> None:
    report = await module.directory.apply_import(parse_roster(DEMO, TODAY), dry_run=True)
    assert report.counts["people"].created == 22
    assert (await module.directory.snapshot()).people == {}


async def test_bad_delta_changes_nothing(module: SferumModule, tmp_path: Path) -> None:
    await load_demo(module.directory)
    before = await module.directory.snapshot()
    delta = tmp_path / "delta"
    delta.mkdir()
    (delta / "manifest.csv").write_text(
        "propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\nfile.enrollments,delta\n"
    )
    (delta / "enrollments.csv").write_text(
        "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,"
        "primary,beginDate,endDate\n"
        "e-new,active,2026-09-01,5a,school-1,p-6b-1,student,false,,\n"
        "e-bad,active,2026-09-01,nope,school-1,p-6b-2,student,false,,\n"
    )
    with pytest.raises(RosterError) as err:
        await module.directory.apply_import(parse_roster(delta, TODAY), dry_run=False)
    assert any(p.file == "enrollments.csv" and p.line == 3 for p in err.value.problems)
    assert await module.directory.snapshot() == before


async def test_member_facts_come_from_the_directory(module: SferumModule) -> None:
    await load_demo(module.directory, "p-5a-3", "g-lebedeva")
    pupil = await module.directory.get_member(uid("p-5a-3"))
    assert pupil is not None and pupil.is_minor
    assert pupil.student_class_ids >= {"5a"}
    guardian = await module.directory.get_member(uid("g-lebedeva"))
    assert guardian is not None
    assert guardian.child_ids == {"p-5a-3", "p-6b-3"}
    assert guardian.child_class_ids >= {"5a", "6b"}
    assert await module.directory.get_member(uid("stranger")) is None
    assert await module.directory.get_member("@someone:other.server") is None


async def test_a_pupil_comes_of_age_at_the_schools_midnight(
    module: SferumModule, api: mock.Mock, tmp_path: Path
) -> None:
    """No roster change: the cached facts move with the day itself."""

    def born_2008(name: str, text: str) -> str:
        if name != "demographics.csv":
            return text
        # p-6b-3 turns 18 tomorrow, 22 September 2026
        lines = [line for line in text.splitlines() if not line.startswith("p-6b-3,")]
        return "\n".join([*lines, "p-6b-3,,,2008-09-22,female" + "," * 11]) + "\n"

    eighteenth = edited_roster(tmp_path / "roster", born_2008)
    await module.directory.apply_import(parse_roster(eighteenth, TODAY), dry_run=False)
    await module.directory.link("p-6b-3", uid("p-6b-3"), None)
    today = await module.directory.get_member(uid("p-6b-3"))
    assert today is not None and today.is_minor
    # 23:59 in Moscow is 20:59 UTC: still the day before the birthday, whatever UTC says.
    api.get_current_time_msec.return_value = moscow_ms(2026, 9, 21, 23, 59)
    assert (await module.directory.get_member(uid("p-6b-3"))).is_minor  # type: ignore[union-attr]
    api.get_current_time_msec.return_value = moscow_ms(2026, 9, 22, 0, 0)
    assert not (await module.directory.get_member(uid("p-6b-3"))).is_minor  # type: ignore[union-attr]


def moscow_ms(year: int, month: int, day: int, hour: int, minute: int) -> int:
    moment = datetime(year, month, day, hour, minute, tzinfo=ZoneInfo("Europe/Moscow"))
    return int(moment.timestamp() * 1000)


async def test_reimport_refreshes_cached_facts(module: SferumModule, tmp_path: Path) -> None:
    await load_demo(module.directory, "p-5a-1")
    assert "5a" in (await module.directory.get_member(uid("p-5a-1"))).student_class_ids  # type: ignore[union-attr]
    moved = roster_with_volkov_in_6b(tmp_path / "roster")
    await module.directory.apply_import(parse_roster(moved, TODAY), dry_run=False)
    member = await module.directory.get_member(uid("p-5a-1"))
    assert member is not None and "6b" in member.student_class_ids
    assert "5a" not in member.student_class_ids


async def test_callbacks_answer_not_spam_or_forbidden_with_reason(
    module: SferumModule, api: mock.Mock
) -> None:
    await load_demo(module.directory, "p-5a-1", "p-5a-2", "p-6b-1", "t-1")
    gate = module.gatekeeper
    dm = {"is_direct": True, "invite": [uid("p-5a-2")], "preset": "trusted_private_chat"}
    assert await gate.user_may_create_room(uid("p-5a-1"), dm) == NOT_SPAM
    # Synapse asks user_may_invite for each createRoom invitee: that is where contact is judged.
    create = mock.Mock(content={"m.federate": False, "ru.sferum.direct": True})
    api.get_room_state.return_value = {("m.room.create", ""): create}
    assert await gate.user_may_invite(uid("p-5a-1"), uid("p-5a-2"), "!dm:" + SERVER) == NOT_SPAM
    assert refused(await gate.user_may_invite(uid("p-5a-1"), uid("p-6b-1"), "!dm:" + SERVER))
    assert (
        refused(await gate.user_may_create_room(uid("stranger"), dm))
        == "ru.sferum.sender_not_in_directory"
    )
    assert refused(await gate.user_may_publish_room(uid("t-1"), "!r:" + SERVER))
    # the bot is the platform: it may do what the rules reserve to the platform
    assert await gate.user_may_create_room(uid("sferum"), {"preset": "public_chat"}) == NOT_SPAM


async def test_provisioned_room_join_follows_the_plan(module: SferumModule) -> None:
    await load_demo(module.directory, "p-5a-1", "g-volkova")
    room_id = "!class5a:" + SERVER
    await module.directory.record_room(RoomKey(RoomKind.CLASS_CHAT, "5a"), room_id)
    await module.directory.set_planned_members(room_id, frozenset({uid("p-5a-1")}))
    gate = module.gatekeeper
    assert await gate.user_may_join_room(uid("p-5a-1"), room_id, True) == NOT_SPAM
    assert refused(await gate.user_may_join_room(uid("g-volkova"), room_id, False))


async def test_an_unexpected_exception_refuses(module: SferumModule) -> None:
    await load_demo(module.directory, "p-5a-1", "p-5a-2")
    with mock.patch("synapse_sferum.policy.may_create_room", side_effect=RuntimeError("boom")):
        result = await module.gatekeeper.user_may_create_room(
            uid("p-5a-1"), {"is_direct": True, "invite": [uid("p-5a-2")]}
        )
    assert refused(result) == "ru.sferum.internal_error"


async def test_directory_search_hides_people_one_may_not_contact(module: SferumModule) -> None:
    await load_demo(module.directory, "p-5a-1", "p-5a-2", "p-6b-1")
    gate = module.gatekeeper
    profile: Any = {"user_id": uid("p-5a-2"), "display_name": None, "avatar_url": None}
    assert await gate.check_username_for_spam(profile, uid("p-5a-1")) is False
    profile = {**profile, "user_id": uid("p-6b-1")}
    assert await gate.check_username_for_spam(profile, uid("p-5a-1")) is True


async def test_issued_accounts_log_in_with_their_initial_password(
    module: SferumModule, api: mock.Mock
) -> None:
    await load_demo(module.directory)
    api.check_user_exists.return_value = done(None)
    api.register_user.side_effect = lambda localpart, displayname=None: done(uid(localpart))
    issuer = module.admin_api._issuer  # the object the admin endpoint uses
    snapshot = await module.directory.snapshot()
    [account] = await issuer.issue(snapshot, ["p-5a-1"])
    assert account.user_id == uid("volkov.artyom") and account.password
    api.register_user.assert_called_once_with(
        "volkov.artyom", displayname="Артём Дмитриевич Волков"
    )
    assert await issuer.check_password(
        account.user_id, "m.login.password", {"password": account.password}
    ) == (account.user_id, None)
    assert (
        await issuer.check_password(account.user_id, "m.login.password", {"password": "wrong"})
        is None
    )
    [again] = await issuer.issue(snapshot, ["p-5a-1"])
    assert again.password is None and again.user_id == account.user_id


async def test_a_card_dies_with_the_first_own_password_expiry_and_deactivation(
    module: SferumModule, api: mock.Mock, database: Any
) -> None:
    await load_demo(module.directory)
    api.check_user_exists.return_value = done(None)
    api.register_user.side_effect = lambda localpart, displayname=None: done(uid(localpart))
    issuer = module.admin_api._issuer
    snapshot = await module.directory.snapshot()
    accounts = await issuer.issue(snapshot, ["p-5a-1", "p-5a-2", "p-5a-3"])
    for account in accounts:  # Synapse's row of each account, with no password of its own
        database.execute(
            "INSERT INTO users (name, password_hash, creation_ts) VALUES (?, NULL, 0)",
            (account.user_id,),
        )

    async def opens(account: Any) -> bool:
        login = {"password": account.password}
        return await issuer.check_password(account.user_id, "m.login.password", login) is not None

    changed, old, gone = accounts
    assert all([await opens(a) for a in accounts])
    database.execute("UPDATE users SET password_hash = 'x' WHERE name = ?", (changed.user_id,))
    assert not await opens(changed)
    database.execute("UPDATE users SET password_hash = NULL WHERE name = ?", (changed.user_id,))
    assert not await opens(changed)  # void for good, even once the own password is gone
    api.get_current_time_msec.return_value = NOW_MS + 30 * 24 * 3600 * 1000  # the card's 30 days
    assert not await opens(old)
    api.get_current_time_msec.return_value = NOW_MS
    await issuer.on_deactivation_status_changed(gone.user_id, True, by_admin=True)
    assert not await opens(gone)
    with mock.patch("synapse_sferum.compat.take_back_account") as take_back:
        [again] = await issuer.reset(snapshot, ["p-5a-1"])
    take_back.assert_awaited_once_with(api, changed.user_id)
    assert again.user_id == changed.user_id and again.password != changed.password
    assert await opens(again) and not await opens(changed)
    with pytest.raises(AccountRequestError, match="person 'p-6b-1' has no account"):
        await issuer.reset(snapshot, ["p-6b-1"])


def demo_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for f in DEMO.iterdir():
            z.write(f, f.name)
    return buffer.getvalue()


async def test_an_account_whose_person_left_the_roster_is_expired(
    module: SferumModule, tmp_path: Path
) -> None:
    await load_demo(module.directory, "p-5a-4", "p-5a-1")
    gate = module.gatekeeper
    assert await gate.is_user_expired(uid("p-5a-4")) is None
    assert await gate.is_user_expired(uid("never-linked")) is None
    left = roster_without_novikova(tmp_path / "roster")
    await module.directory.apply_import(parse_roster(left, TODAY), dry_run=False)
    assert await gate.is_user_expired(uid("p-5a-4")) is True
    assert await gate.is_user_expired(uid("p-5a-1")) is None
