"""Fails loudly if a Synapse upgrade changes what `compat` relies on."""

import inspect
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import synapse
from synapse.api.errors import Codes, StoreError, SynapseError
from synapse.events import EventBase
from synapse.events.snapshot import UnpersistedEventContextBase
from synapse.handlers.deactivate_account import DeactivateAccountHandler
from synapse.handlers.message import EventCreationHandler
from synapse.handlers.profile import ProfileHandler
from synapse.handlers.push_rules import PushRulesHandler
from synapse.handlers.set_password import SetPasswordHandler
from synapse.handlers.ui_auth.checkers import (
    RegistrationTokenAuthChecker,
    _BaseThreepidAuthChecker,
)
from synapse.handlers.user_directory import UserDirectoryHandler
from synapse.module_api import ModuleApi, cached
from synapse.module_api.callbacks.third_party_event_rules_callbacks import (
    ThirdPartyEventRulesModuleApiCallbacks,
)
from synapse.notifier import Notifier
from synapse.push.rulekinds import PRIORITY_CLASS_MAP
from synapse.rest.client.push_rule import PushRuleRestServlet
from synapse.rest.well_known import well_known_resource
from synapse.storage.database import DatabasePool
from synapse.storage.databases.main.directory import DirectoryWorkerStore
from synapse.storage.databases.main.events_worker import EventsWorkerStore
from synapse.storage.databases.main.openid import OpenIdStore
from synapse.storage.databases.main.push_rule import PushRulesWorkerStore
from synapse.storage.databases.main.registration import RegistrationWorkerStore
from synapse.storage.databases.main.room import RoomStore
from synapse.storage.databases.main.ui_auth import UIAuthWorkerStore
from synapse.storage.engines._base import IsolationLevel
from synapse.synapse_rust.push import FilteredPushRules, PushRule, PushRuleEvaluator, PushRules
from synapse.types.state import StateFilter
from synapse.util.httpresourcetree import create_resource_tree
from twisted.web.resource import Resource

from sferum_shared.vocabulary import PushRuleId
from synapse_sferum.compat import (
    QUIET_RULE,
    UIA_MSISDN,
    UIA_REGISTRATION_TOKEN,
    EventCallback,
    EventVerdict,
    create_registration_token_txn,
    event_reports_after_txn,
    guard_avatar_changes,
    has_own_password_txn,
    latest_event_report_txn,
    limit_directory_hints,
    media_facts_txn,
    module_clock,
    openid_user_txn,
    redacted_txn,
    refuse_mistyped_phone_requests,
    register_event_callbacks,
    registrations_with_msisdn_txn,
    restore_pushes,
    retire_registration_token_txn,
    room_event,
    room_versions,
    run_read_committed,
    silence_pushes,
    synapse_well_known,
    take_back_account,
    unredacted_counts_txn,
    unredacted_events_txn,
    upgrade_room,
)
from synapse_sferum.policy.reports import EventReport
from synapse_sferum.state_needs import NO_STATE, StateNeeds, needs
from tests.module.conftest import make_event


class _Cached:
    def __init__(self) -> None:
        self.server_name = "school.test"
        self.clock = module_clock(self.server_name)
        self.calls = 0

    @cached()
    async def double(self, x: int) -> int:
        self.calls += 1
        return 2 * x


async def test_cached_methods_work_with_the_module_clock() -> None:
    obj = _Cached()
    assert await obj.double(2) == 4
    assert await obj.double(2) == 4
    assert obj.calls == 1
    obj.double.invalidate((2,))
    assert await obj.double(2) == 4
    assert obj.calls == 2


# -- quiet hours' push rule -------------------------------------------------------------------


def _actions(extra_rules: list[PushRule], flattened: dict[str, Any], member_count: int) -> Any:
    """What Synapse's own (Rust) evaluator decides for the teacher, with the base rules too."""
    rules = FilteredPushRules(
        PushRules(extra_rules),
        {},
        msc1767_enabled=False,
        msc3381_polls_enabled=False,
        msc3664_enabled=False,
        msc4028_push_encrypted_events=False,
        msc4075_enabled=False,
        msc4210_enabled=False,
        msc4306_enabled=False,
    )
    evaluator = PushRuleEvaluator(
        flattened, False, member_count, 0, {"room": 50}, {}, True, [], False, False, False
    )
    return evaluator.run(rules, "@teacher:s", "Марина", None)


# The rule exactly as `add_push_rule` stores it (one row of the push_rules table).
QUIET_ROW = PushRule.from_db(
    rule_id=QUIET_RULE,
    priority_class=PRIORITY_CLASS_MAP["override"],
    conditions="[]",
    actions="[]",
)
DM_MESSAGE = {
    "type": "m.room.message",
    "content.msgtype": "m.text",
    "content.body": "Здравствуйте",
}
MENTION = {**DM_MESSAGE, "content.body": "Марина, @room"}
INVITE = {"type": "m.room.member", "content.membership": "invite", "state_key": "@teacher:s"}


@pytest.mark.parametrize(
    ("event", "members"), [(DM_MESSAGE, 2), (MENTION, 30), (INVITE, 30)], ids=str
)
def test_the_quiet_rule_silences_what_would_notify(event: dict[str, Any], members: int) -> None:
    assert "notify" in _actions([], event, members)
    assert _actions([QUIET_ROW], event, members) == []


def test_synapse_still_stores_push_rules_as_quiet_hours_write_them() -> None:
    assert PRIORITY_CLASS_MAP["override"] == 5
    add = inspect.signature(PushRulesWorkerStore.add_push_rule).parameters
    assert {"user_id", "rule_id", "priority_class", "conditions", "actions"} <= set(add)
    assert list(inspect.signature(PushRulesWorkerStore.delete_push_rule).parameters) == [
        "self",
        "user_id",
        "rule_id",
    ]
    assert list(inspect.signature(PushRulesHandler.notify_user).parameters) == ["self", "user_id"]
    # the client API namespaces rule IDs in the table the same way, so clients see our rule
    put = inspect.getsource(PushRuleRestServlet.handle_put)
    assert 'rule_id=f"global/{spec.template}/{spec.rule_id}"' in put
    assert QUIET_RULE.split("/") == ["global", "override", PushRuleId.QUIET_HOURS]


def _hs() -> mock.Mock:
    hs = mock.Mock()
    hs.config.email.email_notif_from = "Школа <school@example.org>"
    store = hs.get_datastores.return_value.main
    store.add_push_rule = mock.AsyncMock()
    store.delete_push_rule = mock.AsyncMock()
    return hs


async def test_silence_and_restore_go_through_synapses_store_and_notify() -> None:
    hs = _hs()
    api = ModuleApi(hs, mock.Mock())  # ModuleApi keeps the HomeServer as `_hs`
    store = hs.get_datastores.return_value.main
    notify = hs.get_push_rules_handler.return_value.notify_user
    await silence_pushes(api, "@teacher:s")
    store.add_push_rule.assert_awaited_once_with(
        user_id="@teacher:s", rule_id=QUIET_RULE, priority_class=5, conditions=[], actions=[]
    )
    notify.assert_called_once_with("@teacher:s")
    await restore_pushes(api, "@teacher:s")
    store.delete_push_rule.assert_awaited_once_with("@teacher:s", QUIET_RULE)
    assert notify.call_count == 2


async def test_restore_is_done_when_the_teacher_deleted_the_rule() -> None:
    hs = _hs()
    api = ModuleApi(hs, mock.Mock())
    store = hs.get_datastores.return_value.main
    store.delete_push_rule.side_effect = StoreError(404, "No row found")
    await restore_pushes(api, "@teacher:s")
    hs.get_push_rules_handler.return_value.notify_user.assert_not_called()
    store.delete_push_rule.side_effect = StoreError(500, "database is locked")
    with pytest.raises(StoreError):
        await restore_pushes(api, "@teacher:s")


# -- linking codes are Synapse registration tokens; UIA pairs a phone with its code ---------------

_SYNAPSE_SCHEMA = (
    Path(synapse.__file__).parent / "storage/schema/main/full_schemas/72/full.sql.sqlite"
)


@pytest.fixture
def synapse_db() -> Iterator[sqlite3.Cursor]:
    """Synapse's own tables, from its full schema, in an in-memory SQLite database."""
    db = sqlite3.connect(":memory:")
    db.executescript(_SYNAPSE_SCHEMA.read_text())
    yield db.cursor()
    db.close()


def test_a_code_is_a_registration_token_as_synapse_stores_them(synapse_db: sqlite3.Cursor) -> None:
    create_registration_token_txn(synapse_db, "AAAA-BBBB-CCCC", 5_000)
    synapse_db.execute(
        "SELECT uses_allowed, pending, completed, expiry_time FROM registration_tokens"
        " WHERE token = ?",
        ("AAAA-BBBB-CCCC",),
    )
    assert synapse_db.fetchone() == (None, 0, 0, 5_000)
    retire_registration_token_txn(synapse_db, "AAAA-BBBB-CCCC", 7_000)
    synapse_db.execute("SELECT expiry_time FROM registration_tokens")
    assert synapse_db.fetchone() == (6_999,)
    # Synapse's validity check: an expiry before now is invalid.
    source = inspect.getsource(RegistrationWorkerStore.registration_token_is_valid)
    assert "expiry_time and expiry_time < now" in source


def test_the_code_of_a_registration_is_found_by_its_verified_phone(
    synapse_db: sqlite3.Cursor,
) -> None:
    # Synapse stores each completed stage's result JSON-encoded, the token stage's as the token.
    assert "json_encoder.encode(result)" in inspect.getsource(
        UIAuthWorkerStore.mark_ui_auth_stage_complete
    )
    assert "return token" in inspect.getsource(RegistrationTokenAuthChecker.check_auth)
    assert "threepid_creds" in inspect.getsource(_BaseThreepidAuthChecker._check_threepid)
    for session, created in (("s1", 1_000), ("s2", 1_000), ("old", 1)):
        synapse_db.execute(
            "INSERT INTO ui_auth_sessions (session_id, creation_time, serverdict, clientdict,"
            " uri, method, description) VALUES (?, ?, '{}', '{}', '/register', 'POST', '')",
            (session, created),
        )
    stages = [
        ("s1", UIA_REGISTRATION_TOKEN, "CODE-1"),
        (
            "s1",
            UIA_MSISDN,
            {
                "medium": "msisdn",
                "address": "79160000001",
                "validated_at": 1,
                "threepid_creds": {"sid": "sid-1", "client_secret": "c"},
            },
        ),
        (
            "s2",
            UIA_MSISDN,
            {
                "medium": "msisdn",
                "address": "79160000002",
                "validated_at": 1,
                "threepid_creds": {"sid": "sid-2", "client_secret": "c"},
            },
        ),
        ("old", UIA_REGISTRATION_TOKEN, "CODE-OLD"),
        (
            "old",
            UIA_MSISDN,
            {
                "medium": "msisdn",
                "address": "79160000001",
                "validated_at": 1,
                "threepid_creds": {"sid": "sid-old", "client_secret": "c"},
            },
        ),
    ]
    for session, stage, result in stages:
        synapse_db.execute(
            "INSERT INTO ui_auth_sessions_credentials (session_id, stage_type, result)"
            " VALUES (?, ?, ?)",
            (session, stage, json.dumps(result)),
        )
    assert registrations_with_msisdn_txn(synapse_db, "79160000001", 500) == {("sid-1", "CODE-1")}
    assert registrations_with_msisdn_txn(synapse_db, "79160000002", 500) == set()


def test_deactivation_goes_through_synapses_handler() -> None:
    parameters = inspect.signature(DeactivateAccountHandler.deactivate_account).parameters
    assert {"user_id", "erase_data", "requester", "by_admin"} <= set(parameters)
    assert "self._hs = hs" in inspect.getsource(ModuleApi.__init__)
    assert "_start_user_parting" in inspect.getsource(DeactivateAccountHandler)


def test_erasing_a_person_calls_what_synapses_admin_servlets_call() -> None:
    """`start_redacting_events`, `redact_status`, `user_media`, `delete_media` (personal.py)."""
    from synapse.handlers.admin import AdminHandler
    from synapse.media.media_repository import MediaRepository
    from synapse.storage.databases.main.media_repository import MediaRepositoryStore
    from synapse.storage.databases.main.roommember import RoomMemberWorkerStore

    start = inspect.signature(AdminHandler.start_redact_events).parameters
    assert list(start)[1:6] == ["user_id", "rooms", "requester", "use_admin", "reason"]
    assert "get_redact_task" in dir(AdminHandler)
    assert {"get_rooms_for_user", "get_rooms_user_currently_banned_from"} <= set(
        dir(RoomMemberWorkerStore)
    )
    paginate = inspect.signature(MediaRepositoryStore.get_local_media_by_user_paginate)
    assert list(paginate.parameters)[1:4] == ["start", "limit", "user_id"]
    assert list(inspect.signature(MediaRepository.delete_local_media_ids).parameters) == [
        "self",
        "media_ids",
    ]


def test_a_persons_other_events_are_found_in_synapses_events_and_redactions(
    synapse_db: sqlite3.Cursor,
) -> None:
    """What erasing redacts beyond Synapse's own task, and whether an article was removed."""
    from synapse.handlers.admin import AdminHandler

    # Synapse's task still takes only these three types; the module redacts the rest.
    assert '["m.room.member", "m.room.message", "m.room.encrypted"]' in inspect.getsource(
        AdminHandler._redact_all_events
    )
    events = [
        (1, "$vote", "org.matrix.msc3381.poll.response", "!a:s", "@me:s"),
        (2, "$like", "m.reaction", "!a:s", "@me:s"),
        (3, "$gone", "m.reaction", "!a:s", "@me:s"),
        (4, "$left", "m.reaction", "!b:s", "@me:s"),
        (5, "$text", "m.room.message", "!a:s", "@me:s"),
        (6, "$theirs", "m.reaction", "!a:s", "@other:s"),
        (7, "$undo", "m.room.redaction", "!a:s", "@me:s"),
    ]
    synapse_db.executemany(
        "INSERT INTO events (stream_ordering, topological_ordering, event_id, type, room_id,"
        " sender, processed, outlier) VALUES (?, 1, ?, ?, ?, ?, 1, 0)",
        events,
    )
    synapse_db.execute("INSERT INTO redactions (event_id, redacts) VALUES ('$undo', '$gone')")
    types = ["m.reaction", "org.matrix.msc3381.poll.response"]
    assert unredacted_events_txn(synapse_db, "@me:s", types, ["!a:s"], 10) == [
        ("!a:s", "$vote", "org.matrix.msc3381.poll.response"),
        ("!a:s", "$like", "m.reaction"),
    ]
    assert unredacted_events_txn(synapse_db, "@me:s", types, ["!a:s", "!b:s"], 1) == [
        ("!a:s", "$vote", "org.matrix.msc3381.poll.response")
    ]
    assert unredacted_events_txn(synapse_db, "@me:s", types, [], 10) == []
    assert unredacted_counts_txn(synapse_db, "@me:s", types) == {
        "m.reaction": 2,
        "org.matrix.msc3381.poll.response": 1,
    }
    assert redacted_txn(synapse_db, "$gone") and not redacted_txn(synapse_db, "$like")


# -- cards: an account's own password, and taking an account back --------------------------------


def test_an_own_password_is_read_from_synapses_users_table(synapse_db: sqlite3.Cursor) -> None:
    synapse_db.execute(
        "INSERT INTO users (name, password_hash, creation_ts) VALUES ('@card:s', NULL, 0)"
    )
    assert has_own_password_txn(synapse_db, "@card:s") is False
    assert has_own_password_txn(synapse_db, "@nobody:s") is False
    synapse_db.execute("UPDATE users SET password_hash = '$2b$12$x' WHERE name = '@card:s'")
    assert has_own_password_txn(synapse_db, "@card:s") is True


async def test_taking_an_account_back_clears_its_password_and_signs_it_out() -> None:
    hs = _hs()
    handler = hs.get_set_password_handler.return_value
    handler.set_password = mock.AsyncMock()
    await take_back_account(ModuleApi(hs, mock.Mock()), "@card:s")
    handler.set_password.assert_awaited_once_with("@card:s", None, logout_devices=True)
    # Synapse's handler: the store takes None for "no password", and without a requester every
    # device and access token goes.
    source = inspect.getsource(SetPasswordHandler.set_password)
    assert "user_set_password_hash(user_id, password_hash)" in source
    assert "delete_all_devices_for_user" in source and "delete_access_tokens_for_user" in source
    store = inspect.getsource(RegistrationWorkerStore.user_set_password_hash)
    assert "password_hash: str | None" in store


# -- counters at READ COMMITTED; mistyped phone requests -----------------------------------------


async def test_exclusive_transactions_run_at_read_committed() -> None:
    hs = _hs()
    db_pool = hs.get_datastores.return_value.main.db_pool
    db_pool.runInteraction = mock.AsyncMock(return_value=7)
    func = mock.Mock()
    assert await run_read_committed(ModuleApi(hs, mock.Mock()), "desc", func, 1, 2) == 7
    db_pool.runInteraction.assert_awaited_once_with(
        "desc", func, 1, 2, isolation_level=IsolationLevel.READ_COMMITTED
    )
    assert "isolation_level" in inspect.signature(DatabasePool.runInteraction).parameters


def test_mistyped_phone_requests_are_a_400_not_a_500() -> None:
    from synapse.rest.client import register

    refuse_mistyped_phone_requests()
    refuse_mistyped_phone_requests()  # idempotent: one wrapper, not two
    to_msisdn: Any = register.phone_number_to_msisdn  # type: ignore[attr-defined]
    check_secret: Any = register.assert_valid_client_secret  # type: ignore[attr-defined]
    assert to_msisdn("RU", "+7 916 555-00-01") == "79165550001"
    for country, number in ((7, "+79165550001"), ("RU", 79165550001), ("RU", ["+7"])):
        with pytest.raises(SynapseError) as refused:
            to_msisdn(country, number)
        assert refused.value.code == 400
    with pytest.raises(SynapseError) as refused:
        check_secret(5)
    assert refused.value.code == 400
    check_secret("s3cret")
    # The servlet still calls them by these names, before any callback of ours.
    source = inspect.getsource(register.MsisdnRegisterRequestTokenRestServlet.on_POST)
    assert "assert_valid_client_secret(client_secret)" in source
    assert "phone_number_to_msisdn(country, phone_number)" in source


async def test_directory_search_says_more_only_when_the_page_is_full() -> None:
    hs = _hs()
    handler = hs.get_user_directory_handler.return_value
    found = {"limited": True, "results": []}  # every match hidden by the contact rules
    handler.search_users = mock.AsyncMock(return_value=found)
    api = ModuleApi(hs, mock.Mock())
    limit_directory_hints(api)
    limit_directory_hints(api)  # idempotent: wrapped once
    assert (await handler.search_users("@p:s", "Козлов", 1))["limited"] is False
    found.update(limited=True, results=[{"user_id": "@q:s"}])
    assert (await handler.search_users("@p:s", "Козлов", 1))["limited"] is True
    # Synapse still filters after the database counted, which is why the flag needed this.
    source = inspect.getsource(UserDirectoryHandler.search_users)
    assert "check_username_for_spam" in source and "limited" not in source.split("return")[-1]


def test_a_room_alias_is_deleted_through_synapses_store() -> None:
    parameters = inspect.signature(DirectoryWorkerStore.delete_room_alias).parameters
    assert list(parameters) == ["self", "room_alias"]


def test_media_facts_come_from_synapses_tables(synapse_db: sqlite3.Cursor) -> None:
    synapse_db.executescript(
        "CREATE TABLE sferum_media_rooms (media_id TEXT, room_id TEXT);"
        "INSERT INTO local_media_repository (media_id, user_id) VALUES ('m1', '@up:s');"
        "INSERT INTO sferum_media_rooms VALUES ('m1', '!class:s');"
        "INSERT INTO local_current_membership VALUES ('!class:s', '@in:s', '$e1', 'join');"
        "INSERT INTO local_current_membership VALUES ('!class:s', '@left:s', '$e2', 'leave');"
        "INSERT INTO local_current_membership VALUES ('!class:s', '@asked:s', '$e3', 'invite');"
    )
    assert media_facts_txn(synapse_db, "@up:s", "m1") == ("@up:s", False)
    assert media_facts_txn(synapse_db, "@in:s", "m1") == ("@up:s", True)
    assert media_facts_txn(synapse_db, "@asked:s", "m1") == ("@up:s", True)
    assert media_facts_txn(synapse_db, "@left:s", "m1") == ("@up:s", False)
    assert media_facts_txn(synapse_db, "@in:s", "other") == (None, False)


async def test_a_global_avatar_change_asks_the_module_first() -> None:
    hs = _hs()
    handler = hs.get_profile_handler.return_value
    handler.set_avatar_url = stored = mock.AsyncMock(return_value=7)
    check = mock.AsyncMock(side_effect=SynapseError(403, "not yours", Codes.FORBIDDEN))
    api = ModuleApi(hs, mock.Mock())
    guard_avatar_changes(api, check)
    guard_avatar_changes(api, check)  # idempotent: wrapped once
    requester = mock.Mock(user=mock.Mock(to_string=lambda: "@p:s"))
    with pytest.raises(SynapseError):
        await handler.set_avatar_url(
            target_user="@p:s", requester=requester, new_avatar_url="mxc://s/theirs"
        )
    stored.assert_not_awaited()
    check.assert_awaited_once_with("@p:s", "mxc://s/theirs")
    by_admin = {"target_user": "@p:s", "requester": requester, "by_admin": True}
    assert await handler.set_avatar_url(new_avatar_url="mxc://s/any", **by_admin) == 7
    assert check.await_count == 1
    # Synapse's set_field, behind the client and admin APIs, still calls it by that name.
    source = inspect.getsource(ProfileHandler.set_field)
    assert "await self.set_avatar_url(" in source and "requester=requester" in source
    parameters = inspect.signature(ProfileHandler.set_avatar_url).parameters
    assert {"requester", "new_avatar_url", "by_admin"} <= set(parameters)


def test_the_media_endpoints_are_the_ones_wrapped() -> None:
    from synapse.rest.client import media

    for servlet in (media.DownloadResource, media.ThumbnailResource):
        source = inspect.getsource(servlet.on_GET)
        assert "get_user_by_req(request, allow_guest=True)" in source
    parameters = list(inspect.signature(media.DownloadResource.on_GET).parameters)
    assert parameters[:4] == ["self", "request", "server_name", "media_id"]


def test_an_openid_token_is_read_as_synapse_reads_it(synapse_db: sqlite3.Cursor) -> None:
    synapse_db.execute(
        "INSERT INTO open_id_tokens (token, ts_valid_until_ms, user_id) VALUES (?, ?, ?)",
        ("tok", 5_000, "@t:school.test"),
    )
    assert openid_user_txn(synapse_db, "tok", 5_000) == "@t:school.test"
    assert openid_user_txn(synapse_db, "tok", 5_001) is None  # expired
    assert openid_user_txn(synapse_db, "other", 1) is None
    # The same query as Synapse's own check, should it change.
    source = inspect.getsource(OpenIdStore.get_user_id_for_open_id_token)
    assert "WHERE token = ? AND ? <= ts_valid_until_ms" in source


# -- reports of messages -----------------------------------------------------------------------


def test_event_reports_are_read_as_synapse_writes_them(synapse_db: sqlite3.Cursor) -> None:
    source = inspect.getsource(RoomStore.add_event_report)
    for column in ("id", "received_ts", "room_id", "event_id", "user_id", "reason", "content"):
        assert f'"{column}":' in source
    assert latest_event_report_txn(synapse_db) == 0
    rows = [
        (1, 1_000, "!r:s", "$a", "@p:s", "мат", json.dumps({"reason": "мат", "score": -100})),
        (2, 2_000, "!r:s", "$b", "@q:s", None, "{}"),
        (3, 2_500, "!r:s", "$c", "@q:s", None, json.dumps({"score": "x"})),
        (4, 9_000, "!r:s", "$d", "@q:s", None, "{}"),  # too fresh to be read yet
    ]
    synapse_db.executemany("INSERT INTO event_reports VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    assert latest_event_report_txn(synapse_db) == 4
    assert event_reports_after_txn(synapse_db, 0, 5_000, 10) == [
        EventReport(1, "!r:s", "$a", "@p:s", "мат", -100),
        EventReport(2, "!r:s", "$b", "@q:s"),
        EventReport(3, "!r:s", "$c", "@q:s"),
    ]
    assert [r.report_id for r in event_reports_after_txn(synapse_db, 1, 5_000, 1)] == [2]


async def test_an_event_is_fetched_in_its_room() -> None:
    parameters = inspect.signature(EventsWorkerStore.get_event).parameters
    assert {"allow_none", "check_room_id"} <= set(parameters)
    api: Any = mock.Mock(spec=ModuleApi)
    api._hs = mock.Mock()
    store = api._hs.get_datastores.return_value.main
    store.get_event = mock.AsyncMock(return_value=None)
    assert await room_event(api, "$e", "!r:s") is None
    store.get_event.assert_awaited_once_with("$e", allow_none=True, check_room_id="!r:s")


# -- /.well-known/matrix: Synapse's children under the module's node ---------------------------


def test_the_modules_well_known_node_keeps_synapses_children() -> None:
    """Synapse's node has exactly the two children we build again; a module's node at
    `/.well-known/matrix` replaces it (and one below it cannot be attached at all)."""
    hs = _hs()
    hs.config.server.server_name = "school.test"
    synapses = well_known_resource(hs).children[b"matrix"]
    ours = synapse_well_known(ModuleApi(hs, mock.Mock()))
    assert {name: type(r) for name, r in synapses.children.items()} == {
        name: type(r) for name, r in ours.items()
    }
    module_node = Resource()
    root = create_resource_tree(
        {"/.well-known": well_known_resource(hs), "/.well-known/matrix": module_node}, Resource()
    )
    assert root.children[b".well-known"].children[b"matrix"] is module_node
    with pytest.raises(KeyError):
        create_resource_tree(
            {"/.well-known": well_known_resource(hs), "/.well-known/matrix/x": Resource()},
            Resource(),
        )


# -- room upgrades: what the client servlet does, as the platform's bot -------------------------


async def test_a_room_is_upgraded_as_synapses_upgrade_servlet_upgrades_it() -> None:
    from contextlib import asynccontextmanager

    from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
    from synapse.handlers.room import RoomCreationHandler
    from synapse.handlers.worker_lock import NEW_EVENT_DURING_PURGE_LOCK_NAME
    from synapse.rest.client.room_upgrade_rest_servlet import RoomUpgradeRestServlet

    parameters = inspect.signature(RoomCreationHandler.upgrade_room).parameters
    assert list(parameters)[1:5] == [
        "requester",
        "old_room_id",
        "new_version",
        "additional_creators",
    ]
    assert "ratelimit" in parameters
    servlet = inspect.getsource(RoomUpgradeRestServlet.on_POST)
    assert "NEW_EVENT_DURING_PURGE_LOCK_NAME" in servlet and "KNOWN_ROOM_VERSIONS" in servlet

    api: Any = mock.Mock(spec=ModuleApi)
    api.server_name = "school.test"
    api._hs = mock.Mock()
    locks: list[tuple[Any, ...]] = []

    @asynccontextmanager
    async def lock(*args: Any, **kwargs: Any) -> Any:
        locks.append((*args, kwargs))
        yield

    api._hs.get_worker_locks_handler.return_value.acquire_read_write_lock = lock
    handler = api._hs.get_room_creation_handler.return_value
    handler.upgrade_room = mock.AsyncMock(return_value="!new:school.test")
    assert await upgrade_room(api, "@sferum:school.test", "!old:school.test", "11") == (
        "!new:school.test"
    )
    assert locks == [(NEW_EVENT_DURING_PURGE_LOCK_NAME, "!old:school.test", {"write": False})]
    [call] = handler.upgrade_room.await_args_list
    requester, room_id, version, creators = call.args
    assert requester.user.to_string() == "@sferum:school.test"
    assert (room_id, version, creators) == ("!old:school.test", KNOWN_ROOM_VERSIONS["11"], None)
    assert call.kwargs == {"ratelimit": False}

    api._hs.config.server.default_room_version = KNOWN_ROOM_VERSIONS["10"]
    default, known = room_versions(api)
    assert default == "10" and {"1", "10", "11"} <= known


# -- event callbacks given only the state they declare ------------------------------------------

ROOM = "!room:s"


def _event(event_type: str, state_key: str | None = None, **fields: Any) -> EventBase:
    if state_key is not None:
        fields["state_key"] = state_key
    return make_event("@a:s", ROOM, type=event_type, content=fields.pop("content", {}), **fields)


# A room whose state is mostly what no callback of ours reads (a school space's members).
STATE_EVENTS = [
    _event("m.room.create", ""),
    _event("m.room.power_levels", "", content={"users": {"@a:s": 100}}),
    _event("m.room.member", "@a:s", content={"membership": "join"}),
    *(_event("m.room.member", f"@p{n}:s", content={"membership": "join"}) for n in range(50)),
]
STATE_IDS = {(e.type, e.state_key): e.event_id for e in STATE_EVENTS}
BY_ID = {e.event_id: e for e in STATE_EVENTS}
WHOLE = StateFilter.all()


class Rules:
    """Synapse's own ThirdPartyEventRulesModuleApiCallbacks over a store that holds the room,
    and a context that, like an unpersisted one, may answer with its whole map."""

    def __init__(self) -> None:
        hs = _hs()
        self.rules = ThirdPartyEventRulesModuleApiCallbacks(hs)
        hs.get_module_api_callbacks.return_value.third_party_event_rules = self.rules
        store = hs.get_datastores.return_value.main
        store.get_event = mock.AsyncMock(side_effect=lambda i, **kw: BY_ID.get(i))
        store.get_events = mock.AsyncMock(side_effect=lambda ids: {i: BY_ID[i] for i in ids})
        self.get_events = store.get_events
        self.current_state = mock.AsyncMock(
            side_effect=lambda room_id, state_filter=WHOLE, **kw: {
                key: BY_ID[i] for key, i in state_filter.filter_state(STATE_IDS).items()
            }
        )
        hs.get_storage_controllers.return_value.state.get_current_state = self.current_state
        self.context = mock.Mock(spec=UnpersistedEventContextBase)
        self.context.get_prev_state_ids = mock.AsyncMock(return_value=STATE_IDS)
        self.api = ModuleApi(hs, mock.Mock())
        self.seen: list[set[tuple[str, str]]] = []

    def check(self, needed: Any, verdict: EventVerdict = (True, None)) -> None:
        async def run(event: EventBase, state: Any) -> EventVerdict:
            self.seen.append(set(state))
            return verdict

        register_event_callbacks(self.api, check_event_allowed=EventCallback(run, needed))

    def listen(self, needed: Any, fails: bool = False) -> None:
        async def run(event: EventBase, state: Any) -> None:
            self.seen.append(set(state))
            if fails:
                raise RuntimeError("a listener's bug")

        register_event_callbacks(self.api, on_new_event=EventCallback(run, needed))


def test_synapse_calls_the_instances_methods_that_the_dispatch_replaces() -> None:
    """The wrapped attributes are looked up at each call, on the one instance."""
    assert "self._third_party_event_rules.check_event_allowed(" in inspect.getsource(
        EventCreationHandler
    )
    assert "self._third_party_rules.on_new_event(event_id)" in inspect.getsource(Notifier)


async def test_a_message_loads_no_state() -> None:
    r = Rules()
    r.check(lambda event: NO_STATE)
    assert await r.rules.check_event_allowed(_event("m.room.message"), r.context) == (True, None)
    assert r.seen == [set()]
    r.context.get_prev_state_ids.assert_not_awaited()
    r.get_events.assert_not_awaited()


async def test_a_check_gets_the_entries_it_declares_and_no_more() -> None:
    r = Rules()
    wanted = needs(("m.room.member", "@p1:s"), ("m.room.power_levels", ""))
    r.check(lambda event: wanted)
    await r.rules.check_event_allowed(_event("m.room.member", "@p1:s"), r.context)
    assert r.seen == [{("m.room.member", "@p1:s"), ("m.room.power_levels", "")}]
    (state_filter,) = r.context.get_prev_state_ids.await_args.args
    assert state_filter == StateFilter.from_types(wanted.keys)
    assert len(r.get_events.await_args.args[0]) == 2


async def test_a_redaction_gets_the_entry_of_the_state_it_redacts() -> None:
    r = Rules()
    r.check(lambda event: StateNeeds(redacted=True))
    levels = STATE_EVENTS[1].event_id
    await r.rules.check_event_allowed(_event("m.room.redaction", redacts=levels), r.context)
    await r.rules.check_event_allowed(_event("m.room.redaction", redacts="$gone"), r.context)
    assert r.seen == [{("m.room.power_levels", "")}, set()]


async def test_the_first_refusal_or_replacement_wins_then_other_modules_run() -> None:
    r = Rules()
    others = mock.AsyncMock(return_value=(True, None))  # another module, the public way
    r.rules.register_third_party_rules_callbacks(check_event_allowed=others)
    r.check(lambda event: NO_STATE)
    assert await r.rules.check_event_allowed(_event("m.room.message"), r.context) == (True, None)
    (_, their_state), _ = others.await_args
    assert len(their_state) == len(STATE_EVENTS)  # Synapse's own way: the whole state
    r.check(lambda event: NO_STATE, (True, {"content": {}}))
    r.check(lambda event: NO_STATE, (False, None))
    verdict = await r.rules.check_event_allowed(_event("m.room.message"), r.context)
    assert verdict == (True, {"content": {}})
    assert others.await_count == 1 and len(r.seen) == 3


@pytest.mark.parametrize("broken", ["declaration", "state"])
async def test_state_that_cannot_be_had_refuses_the_event(
    broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    r = Rules()

    def needed(event: EventBase) -> StateNeeds:
        if broken == "declaration":
            raise KeyError("content")
        return needs(("m.room.member", None))

    r.context.get_prev_state_ids.side_effect = TypeError("moved")
    r.check(needed)
    assert await r.rules.check_event_allowed(_event("m.room.message"), r.context) == (False, None)
    assert r.seen == []
    assert "refusing" in caplog.text


async def test_listeners_share_one_load_and_each_sees_its_own_entries() -> None:
    r = Rules()
    others = mock.AsyncMock()
    r.rules.register_third_party_rules_callbacks(on_new_event=others)
    r.listen(lambda event: needs(("m.room.create", "")), fails=True)
    r.listen(lambda event: NO_STATE)
    r.listen(lambda event: needs(("m.room.member", None)))
    message = _event("m.room.message")
    BY_ID[message.event_id] = message
    await r.rules.on_new_event(message.event_id)
    members = {k for k in STATE_IDS if k[0] == "m.room.member"}
    assert r.seen == [{("m.room.create", "")}, set(), members]  # after one listener failed
    ours, _ = r.current_state.await_args_list  # the other module's: Synapse's own way
    _, state_filter = ours.args
    assert state_filter == StateFilter.from_types([("m.room.create", ""), ("m.room.member", None)])
    assert ours.kwargs == {"await_full_state": False}
    assert len(others.await_args.args[1]) == len(STATE_EVENTS)


async def test_an_event_no_listener_reads_state_for_loads_none() -> None:
    r = Rules()
    r.listen(lambda event: NO_STATE)
    message = _event("m.room.message")
    BY_ID[message.event_id] = message
    await r.rules.on_new_event(message.event_id)
    assert r.seen == [set()]
    r.current_state.assert_not_awaited()


def test_the_dispatch_is_installed_once_per_process() -> None:
    r = Rules()
    r.check(lambda event: NO_STATE)
    wrapped = r.rules.check_event_allowed
    r.listen(lambda event: NO_STATE)
    r.check(lambda event: NO_STATE)
    assert r.rules.check_event_allowed == wrapped
    assert r.rules._check_event_allowed_callbacks == []  # ours are not Synapse's to run


async def test_if_synapses_internals_moved_the_callbacks_are_registered_the_public_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = Rules()

    async def get_prev_state_ids(self: Any) -> Any:  # no state_filter any more
        return {}

    run = mock.AsyncMock(return_value=(True, None))
    with mock.patch.object(UnpersistedEventContextBase, "get_prev_state_ids", get_prev_state_ids):
        register_event_callbacks(r.api, check_event_allowed=EventCallback(run))
    assert r.rules._check_event_allowed_callbacks == [run]
    assert "registered the public way" in caplog.text
    # Synapse's own dispatch runs it, with the whole state: the rules hold, only slower.
    await r.rules.check_event_allowed(_event("m.room.message"), r.context)
    assert len(run.await_args.args[1]) == len(STATE_EVENTS)
