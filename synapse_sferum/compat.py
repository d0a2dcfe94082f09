"""The one place that reaches past Synapse's public module API.

Each function here says why no public route exists. tests/module/test_compat.py checks every
assumption against the installed Synapse and fails loudly if an upgrade changes one; the
integration tests exercise them against real servers.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar, cast

import attrs
from synapse.api.errors import Codes, StoreError, SynapseError
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.events import EventBase
from synapse.events.snapshot import UnpersistedEventContextBase
from synapse.handlers.worker_lock import NEW_EVENT_DURING_PURGE_LOCK_NAME
from synapse.module_api import ModuleApi
from synapse.module_api.callbacks.third_party_event_rules_callbacks import (
    ThirdPartyEventRulesModuleApiCallbacks,
)
from synapse.push.rulekinds import PRIORITY_CLASS_MAP
from synapse.rest.well_known import ClientWellKnownResource, ServerWellKnownResource
from synapse.storage.controllers.state import StateStorageController
from synapse.storage.engines import PostgresEngine
from synapse.types import RoomAlias, StateMap, create_requester
from synapse.types.state import StateFilter
from synapse.util.async_helpers import delay_cancellation
from synapse.util.clock import Clock
from twisted.internet import reactor
from twisted.web.resource import Resource

from sferum_shared.vocabulary import Key, PushRuleId, Reason
from synapse_sferum.policy.reports import EventReport
from synapse_sferum.state_needs import NO_STATE, StateNeeds, union

logger = logging.getLogger(__name__)

Txn = Any

UIA_MSISDN = "m.login.msisdn"
UIA_REGISTRATION_TOKEN = "m.login.registration_token"


def module_clock(server_name: str) -> Clock:
    """`synapse.module_api.cached` is public, but since Synapse 1.138 the cache it builds reads
    `server_name` and `clock` attributes from the instance, and ModuleApi exposes no clock. We
    build one the way Synapse's own DirectServeJsonResource does when a module gives none."""
    return Clock(cast(Any, reactor), server_name=server_name)


# Linking codes are Synapse registration tokens (so every client's registration-token stage
# works), but ModuleApi cannot create or delete tokens and the admin API needs an admin's access
# token. Writing the row in the module's own transaction also keeps a code and its token in step:
# both exist or neither does. Columns as in synapse/storage/schema/main/delta/63.


def create_registration_token_txn(txn: Txn, token: str, expiry_ms: int) -> None:
    """An unlimited-use token: the module itself allows one use (pending registrations that
    the module refuses then never hold a code hostage, as Synapse's `pending` count would)."""
    txn.execute(
        "INSERT INTO registration_tokens (token, uses_allowed, pending, completed, expiry_time)"
        " VALUES (?, NULL, 0, 0, ?)",
        (token, expiry_ms),
    )


def retire_registration_token_txn(txn: Txn, token: str, now_ms: int) -> None:
    """Expires a used code's token. Not deleted: Synapse still counts the registration that
    used it (`use_registration_token`, after the account exists) and needs the row then."""
    txn.execute(
        "UPDATE registration_tokens SET expiry_time = ? WHERE token = ?", (now_ms - 1, token)
    )


def registrations_with_msisdn_txn(txn: Txn, msisdn: str, since_ms: int) -> set[tuple[str, str]]:
    """(SMS session id, registration token) of each open UIA session that validated this phone.

    Synapse asks modules whether a phone may register (`is_3pid_allowed`) without saying which
    registration asks, and the only callback that sees both the token and the phone
    (`get_username_for_registration`) can only answer with a 500. Synapse records each completed
    UIA stage in `ui_auth_sessions_credentials` before it asks, so the pair is found there.
    """
    txn.execute(
        "SELECT c.session_id, c.result FROM ui_auth_sessions_credentials c"
        " JOIN ui_auth_sessions s ON s.session_id = c.session_id"
        " WHERE c.stage_type = ? AND s.creation_time >= ?",
        (UIA_MSISDN, since_ms),
    )
    sids: dict[str, str] = {}
    for session_id, result in txn.fetchall():
        threepid = json.loads(result)
        if threepid.get("address") == msisdn:
            sids[session_id] = str(threepid.get("threepid_creds", {}).get("sid", ""))
    pairs = set()
    for session_id, sid in sids.items():
        txn.execute(
            "SELECT result FROM ui_auth_sessions_credentials"
            " WHERE session_id = ? AND stage_type = ?",
            (session_id, UIA_REGISTRATION_TOKEN),
        )
        row = txn.fetchone()
        if row is not None:
            pairs.add((sid, str(json.loads(row[0]))))
    return pairs


# Quiet hours silence a teacher's pushes with one push rule of the teacher's own: an override
# rule that matches every event and does nothing, put first among the user's override rules
# (only `.m.rule.master` comes before). Taking it away restores exactly what the teacher had:
# nothing else is touched, so the teacher's own settings survive, and the teacher's clients see
# the rule too and stay quiet. ModuleApi can only change the actions of existing rules
# (`set_push_rule_action`); silencing every notifying rule that way (base and the user's own)
# and putting the old actions back would need reading the rules, which ModuleApi cannot either,
# and would clobber any change the teacher made in between. So the rule is written the way
# Synapse's own PUT/DELETE /pushrules handlers do it. Like `set_push_rule_action`, this works
# only on the push rules stream writer: the main process unless `stream_writers.push_rules` says
# otherwise.

# As Synapse namespaces a rule in its table:
QUIET_RULE = f"global/override/{PushRuleId.QUIET_HOURS}"


def _hs(api: ModuleApi) -> Any:
    return api._hs  # ModuleApi keeps the HomeServer here; see the note above


async def silence_pushes(api: ModuleApi, user_id: str) -> None:
    """Puts the quiet rule in place (again, harmlessly, if it is there)."""
    hs = _hs(api)
    await hs.get_datastores().main.add_push_rule(
        user_id=user_id,
        rule_id=QUIET_RULE,
        priority_class=PRIORITY_CLASS_MAP["override"],
        conditions=[],
        actions=[],
    )
    hs.get_push_rules_handler().notify_user(user_id)


async def restore_pushes(api: ModuleApi, user_id: str) -> None:
    """Takes the quiet rule away; nothing to do if the teacher already deleted it."""
    hs = _hs(api)
    try:
        await hs.get_datastores().main.delete_push_rule(user_id, QUIET_RULE)
    except StoreError as e:
        if e.code != 404:
            raise
        return
    hs.get_push_rules_handler().notify_user(user_id)


async def deactivate_account(api: ModuleApi, user_id: str, *, erase: bool = False) -> None:
    """Deactivates an account as Synapse's admin API does: devices, tokens, phones and pushers
    go, and Synapse's background parter takes the user out of every room, DMs included.
    `erase` is the admin API's `{"erase": true}`: the profile goes and the user is marked erased.

    ModuleApi can neither deactivate nor list a user's rooms, so this goes through the
    homeserver's deactivation handler (`synapse/handlers/deactivate_account.py`).
    """
    hs = _hs(api)
    requester = create_requester(user_id, authenticated_entity=api.server_name)
    await hs.get_deactivate_account_handler().deactivate_account(
        user_id, erase_data=erase, requester=requester, by_admin=True
    )


# Erasing a person (`sferumctl person erase`, synapse_sferum/personal.py) does what Synapse's
# admin API does for a user's events and media, which ModuleApi cannot: the module has no admin
# access token to call that API with, so these go to the same handlers its servlets call
# (`rest/admin/users.py` RedactUser and RedactUserStatus, `rest/admin/media.py`
# UserMediaRestServlet).

MEDIA_PAGE = 1000


async def start_redacting_events(api: ModuleApi, user_id: str) -> str:
    """Starts Synapse's background redaction of the user's messages and memberships in every
    room they are in or banned from, as the user; returns the task's ID for `redact_status`."""
    hs = _hs(api)
    store = hs.get_datastores().main
    rooms = [
        *await store.get_rooms_for_user(user_id),
        *await store.get_rooms_user_currently_banned_from(user_id),
    ]
    requester = create_requester(user_id, authenticated_entity=api.server_name)
    redact_id: str = await hs.get_admin_handler().start_redact_events(
        user_id, rooms, requester.serialize(), False, None
    )
    return redact_id


async def redact_status(api: ModuleApi, redact_id: str) -> dict[str, Any] | None:
    """The task's status as the admin API tells it (`scheduled`, `active`, `complete` with
    `failed_redactions`, `failed` with `error`); None for an unknown or expired ID. Each failed
    redaction is {event_id, type, reason}: the type tells a membership the school's rules keep
    from a message that should have gone."""
    hs = _hs(api)
    task = await hs.get_admin_handler().get_redact_task(redact_id)
    if task is None:
        return None
    status: dict[str, Any] = {"status": task.status.value}
    if task.result is not None:
        failed = task.result.get("failed_redactions") or {}
        events = await hs.get_datastores().main.get_events(list(failed))
        status["failed_redactions"] = [
            {
                "event_id": event_id,
                "type": events[event_id].type if event_id in events else None,
                "reason": reason,
            }
            for event_id, reason in sorted(failed.items())
        ]
    if task.error is not None:
        status["error"] = task.error
    return status


# Synapse's redaction task (`_redact_all_events` in `handlers/admin.py`) takes only a user's
# `m.room.member`, `m.room.message` and `m.room.encrypted` events. Erasing redacts the person's
# other events as well (reactions, stickers, polls and votes); ModuleApi can neither list a
# user's events nor tell whether one was redacted, so these read Synapse's `events` and
# `redactions` tables (synapse/storage/schema/main/full_schemas).


def redacted_txn(txn: Txn, event_id: str) -> bool:
    """Whether a redaction of the event has been stored."""
    txn.execute("SELECT 1 FROM redactions WHERE redacts = ?", (event_id,))
    return txn.fetchone() is not None


def _unredacted_where(types: Sequence[str]) -> str:
    return (
        f"e.sender = ? AND e.type IN ({', '.join('?' * len(types))}) AND NOT EXISTS"
        " (SELECT 1 FROM redactions r WHERE r.redacts = e.event_id)"
    )


def unredacted_events_txn(
    txn: Txn, user_id: str, types: Sequence[str], room_ids: Sequence[str], limit: int
) -> list[tuple[str, str, str]]:
    """(room ID, event ID, type) of at most `limit` of the user's events of these types in these
    rooms that nobody redacted, oldest first."""
    if not types or not room_ids:
        return []
    rooms = ", ".join("?" * len(room_ids))
    txn.execute(
        f"SELECT e.room_id, e.event_id, e.type FROM events e WHERE {_unredacted_where(types)}"
        f" AND e.room_id IN ({rooms}) AND e.outlier = ? ORDER BY e.stream_ordering LIMIT ?",
        (user_id, *types, *room_ids, False, limit),
    )
    return [(str(r[0]), str(r[1]), str(r[2])) for r in txn.fetchall()]


def unredacted_counts_txn(txn: Txn, user_id: str, types: Sequence[str]) -> dict[str, int]:
    """How many of the user's events of each of these types nobody redacted, in every room."""
    if not types:
        return {}
    txn.execute(
        f"SELECT e.type, COUNT(*) FROM events e WHERE {_unredacted_where(types)}"
        " AND e.outlier = ? GROUP BY e.type",
        (user_id, *types, False),
    )
    return {str(r[0]): int(r[1]) for r in txn.fetchall()}


async def joined_rooms(api: ModuleApi, user_id: str) -> list[str]:
    """The rooms the user is joined to now (ModuleApi lists only a user's own via a client)."""
    return sorted(await _hs(api).get_datastores().main.get_rooms_for_user(user_id))


async def user_media(api: ModuleApi, user_id: str) -> list[dict[str, Any]]:
    """Every file the user uploaded to this server: `media_id`, `media_type`, `media_length`,
    `upload_name`, `created_ts` (the admin API's list of a user's media)."""
    store = _hs(api).get_datastores().main
    found: list[dict[str, Any]] = []
    while True:
        page, total = await store.get_local_media_by_user_paginate(
            len(found), MEDIA_PAGE, user_id
        )
        found += [
            {
                "media_id": m.media_id,
                "media_type": m.media_type,
                "media_length": m.media_length,
                "upload_name": m.upload_name,
                "created_ts": m.created_ts,
            }
            for m in page
        ]
        if not page or len(found) >= total:
            return found


async def delete_media(api: ModuleApi, media_ids: list[str]) -> int:
    """Deletes these local files, their thumbnails and records; returns how many went."""
    _, deleted = await _hs(api).get_media_repository().delete_local_media_ids(media_ids)
    return int(deleted)


# A school-issued account's card password is checked by the module (ModuleApi can register an
# account but not give it a password). Once the account has a password of its own in Synapse's
# `users` table, the card must stop working, and a reset must take that password away again and
# sign every session out: ModuleApi can neither read nor clear a password, nor list devices.


def has_own_password_txn(txn: Txn, user_id: str) -> bool:
    """Whether Synapse holds a password for the account (set by a change, or by an admin)."""
    txn.execute("SELECT password_hash FROM users WHERE name = ?", (user_id,))
    row = txn.fetchone()
    return bool(row and row[0])


async def take_back_account(api: ModuleApi, user_id: str) -> None:
    """Clears the account's own password and signs out every device and access token, as
    Synapse's admin password reset does (`SetPasswordHandler`, with no new password)."""
    handler = _hs(api).get_set_password_handler()
    await handler.set_password(user_id, cast(str, None), logout_devices=True)


# Counters that concurrent requests race for (wrong SMS codes, the claim on a linking code) are
# changed by one conditional UPDATE. At READ COMMITTED a second UPDATE of the same row waits for
# the first to commit and then checks its condition against the new row, so exactly as many
# succeed as the condition allows. ModuleApi.run_db_interaction runs at the engine's default,
# which on PostgreSQL is REPEATABLE READ: there the second UPDATE fails with a serialization
# error, and Synapse retries the whole transaction only a few times before giving up (a 500).
# SQLite has a single writer, so any level is exact there.


async def run_read_committed(api: ModuleApi, desc: str, func: Any, *args: Any) -> Any:
    """`api.run_db_interaction`, at READ COMMITTED isolation."""
    from synapse.storage.engines._base import IsolationLevel

    db_pool = _hs(api).get_datastores().main.db_pool
    return await db_pool.runInteraction(
        desc, func, *args, isolation_level=IsolationLevel.READ_COMMITTED
    )


# Synapse's /register/msisdn/requestToken passes the client's JSON values to phonenumbers and to
# its client-secret check without looking at their types: a number where a string belongs is a
# TypeError there, answered with a 500 (and this module is what turns msisdn registration on).
# No callback runs before those two calls, so their names in that servlet's module are wrapped
# to refuse such values as the spec does, with a 400. Idempotent: a second module load (a
# worker, a test) wraps nothing twice.


def refuse_mistyped_phone_requests() -> None:
    register: Any = importlib.import_module("synapse.rest.client.register")
    if getattr(register.phone_number_to_msisdn, "_sferum_checks_types", False) is True:
        return
    to_msisdn, check_secret = register.phone_number_to_msisdn, register.assert_valid_client_secret

    def phone_number_to_msisdn(country: Any, number: Any) -> str:
        if not isinstance(country, str) or not isinstance(number, str):
            raise SynapseError(
                400,
                "'country' and 'phone_number' must be strings",
                Codes.INVALID_PARAM,
                {Key.REASON: Reason.PHONE_INVALID.value},
            )
        msisdn: str = to_msisdn(country, number)
        return msisdn

    def assert_valid_client_secret(client_secret: Any) -> None:
        if not isinstance(client_secret, str):
            raise SynapseError(400, "Invalid client_secret parameter", Codes.INVALID_PARAM)
        check_secret(client_secret)

    phone_number_to_msisdn._sferum_checks_types = True  # type: ignore[attr-defined]
    register.phone_number_to_msisdn = phone_number_to_msisdn
    register.assert_valid_client_secret = assert_valid_client_secret


async def delete_room_alias(api: ModuleApi, alias: str) -> bool:
    """Takes a local alias out of the directory, as its admin would; False if there was none.

    ModuleApi can create aliases (with a room) and look them up, but not delete them.
    """
    room_id = await _hs(api).get_datastores().main.delete_room_alias(RoomAlias.from_string(alias))
    return room_id is not None


# User-directory search filters the matches through `check_username_for_spam` (our contact
# rules) after the database found them, but Synapse computes the answer's `limited` ("there are
# more") from the unfiltered count: a search whose every match is hidden still answered
# `limited: true`, telling the searcher that hidden people of that name exist. No callback sees
# the answer, so the handler's method is wrapped on this process's handler (every worker loads
# the module, so every worker wraps its own).


def limit_directory_hints(api: ModuleApi) -> None:
    """`limited` becomes whether the filtered page is full: true only when the searcher sees
    as many matches as asked for, whatever was hidden."""
    handler = _hs(api).get_user_directory_handler()
    search = handler.search_users
    if getattr(search, "_sferum_hides_hints", False) is True:
        return

    async def search_users(user_id: str, search_term: str, limit: int) -> Any:
        result = await search(user_id, search_term, limit)
        result["limited"] = len(result["results"]) >= limit
        return result

    search_users._sferum_hides_hints = True  # type: ignore[attr-defined]
    handler.search_users = search_users


# Files: Synapse serves a local file to any account that knows its mxc:// URI (room-scoped media,
# MSC3911, is not implemented), and no callback is asked before a download. So the two client
# endpoints that serve files (/_matrix/client/v1/media/download and /thumbnail; the legacy
# unauthenticated ones serve no new media) are wrapped to ask the module first, and the two
# facts it needs come from Synapse's tables: who uploaded a file (`local_media_repository`), and
# whether the account is in (or invited to) a room the file was posted in (`local_current_
# membership` against the module's `sferum_media_rooms`).


def media_facts_txn(txn: Txn, user_id: str, media_id: str) -> tuple[str | None, bool]:
    """(who uploaded it, the account is in a room it was posted in)."""
    txn.execute("SELECT user_id FROM local_media_repository WHERE media_id = ?", (media_id,))
    row = txn.fetchone()
    txn.execute(
        "SELECT 1 FROM sferum_media_rooms m JOIN local_current_membership c"
        " ON c.room_id = m.room_id"
        " WHERE m.media_id = ? AND c.user_id = ? AND c.membership IN ('join', 'invite')"
        " LIMIT 1",
        (media_id, user_id),
    )
    return (str(row[0]) if row and row[0] else None), txn.fetchone() is not None


MediaCheck = Any  # async (user_id, server_name, media_id, is_admin) -> bool


def guard_media_downloads(may_fetch: MediaCheck) -> None:
    """Puts `may_fetch` in front of the client media endpoints of this process (a 404 when it
    says no, as for a file that does not exist). Idempotent."""
    from synapse.media._base import respond_404
    from synapse.rest.client import media

    for servlet in (media.DownloadResource, media.ThumbnailResource):
        serve = servlet.on_GET
        if getattr(serve, "_sferum_guarded", False) is True:
            continue

        async def on_get(
            self: Any, request: Any, server_name: str, media_id: str, _serve: Any = serve,
            **path: Any,
        ) -> None:  # fmt: skip
            # Who asks, without settling the request's requester: Synapse's own handler, run
            # next, does that (and answers a bad token with its own 401).
            token = self.auth.get_access_token_from_request(request)
            requester = await self.auth.get_user_by_access_token(token, allow_expired=False)
            admin = await self.auth.is_server_admin(requester)
            if not await may_fetch(requester.user.to_string(), server_name, media_id, admin):
                respond_404(request)
                return
            await _serve(self, request, server_name=server_name, media_id=media_id, **path)

        on_get._sferum_guarded = True  # type: ignore[attr-defined]
        on_get.__wrapped__ = serve  # type: ignore[attr-defined]
        servlet.on_GET = on_get  # type: ignore[method-assign]


def openid_user_txn(txn: Txn, token: str, now_ms: int) -> str | None:
    """The user an OpenID token (`/user/{id}/openid/request_token`) stands for, while valid.

    The module's own widget page (`/join/codes`) gets such a token from the client. Other
    servers check one at the federation API's `openid/userinfo`; the module has no public way to
    ask its own server, so it reads the row Synapse's `get_user_id_for_open_id_token` reads.
    """
    txn.execute(
        "SELECT user_id FROM open_id_tokens WHERE token = ? AND ? <= ts_valid_until_ms",
        (token, now_ms),
    )
    row = txn.fetchone()
    return str(row[0]) if row else None


# Real photos: a user must not set another member's uploaded photo as their own. No callback
# can refuse a global profile change (`on_profile_update` only hears of it once it is stored,
# and Synapse swallows its errors), and `check_avatar_size_and_mime_type`, which Synapse asks
# for both the profile and member events, is not told who asks. So the profile handler's
# `set_avatar_url` of this process is wrapped (every worker loads the module and wraps its own;
# `set_field`, behind PUT /profile/{user}/avatar_url and the admin API, calls it by that name).
# A change made by an admin passes; the check raises the refusal itself.

AvatarCheck = Any  # async (user_id, avatar_url) -> None, raising a SynapseError to refuse


def guard_avatar_changes(api: ModuleApi, check: AvatarCheck) -> None:
    """Puts `check` in front of every global avatar change that is not an admin's. Idempotent."""
    handler = _hs(api).get_profile_handler()
    set_avatar_url = handler.set_avatar_url
    if getattr(set_avatar_url, "_sferum_guarded", False) is True:
        return

    async def guarded(*, requester: Any, new_avatar_url: Any, **rest: Any) -> Any:
        if not rest.get("by_admin") and isinstance(new_avatar_url, str):
            await check(requester.user.to_string(), new_avatar_url)
        return await set_avatar_url(requester=requester, new_avatar_url=new_avatar_url, **rest)

    guarded._sferum_guarded = True  # type: ignore[attr-defined]
    handler.set_avatar_url = guarded


# The module serves MSC1929's /.well-known/matrix/support, which Synapse does not. Synapse builds
# `/.well-known/matrix` with its `client` and `server` children inside `well_known_resource`,
# where `create_resource_tree` cannot see them: a module resource at
# `/.well-known/matrix/support` fails start-up with a KeyError, and one at `/.well-known/matrix`
# replaces Synapse's node, children and all. So the module's node carries Synapse's two
# resources again, built as `well_known_resource` builds them from the HomeServer, which
# ModuleApi does not give out (nor the resources, nor a way to add a well-known file).


def synapse_well_known(api: ModuleApi) -> dict[bytes, Resource]:
    """Synapse's own children of `/.well-known/matrix`, by name."""
    hs = _hs(api)
    return {b"client": ClientWellKnownResource(hs), b"server": ServerWellKnownResource(hs)}


# Reports of messages: `POST /rooms/{r}/report/{e}` only writes a row to Synapse's
# `event_reports` (storage/databases/main/room.py `add_event_report`: id, received_ts, room_id,
# event_id, user_id, reason, content = the request's JSON), and no module callback fires on a
# report (element-hq/synapse#18904). There is no public way to read them but the admin API,
# which needs an admin's access token; so the platform reads the table, by id.


def latest_event_report_txn(txn: Txn) -> int:
    """The id of the newest report (0: none yet)."""
    txn.execute("SELECT COALESCE(MAX(id), 0) FROM event_reports")
    return int(txn.fetchone()[0])


def event_reports_after_txn(
    txn: Txn, after_id: int, received_before_ms: int, limit: int
) -> list[EventReport]:
    """Reports newer than `after_id` made before `received_before_ms`, oldest first.

    Synapse takes a report's id from a counter in memory before it writes the row, so two
    reports written at once may commit out of order: only reports a moment old are read, so
    that none commits behind one already handled."""
    txn.execute(
        "SELECT id, room_id, event_id, user_id, reason, content FROM event_reports"
        " WHERE id > ? AND received_ts < ? ORDER BY id LIMIT ?",
        (after_id, received_before_ms, limit),
    )
    reports = []
    for report_id, room_id, event_id, user_id, reason, content in txn.fetchall():
        try:
            score = json.loads(content or "{}").get("score")
        except (ValueError, AttributeError):
            score = None
        reports.append(
            EventReport(
                report_id=int(report_id),
                room_id=room_id,
                event_id=event_id,
                reporter=user_id,
                reason=reason if isinstance(reason, str) else None,
                score=score if isinstance(score, int) and not isinstance(score, bool) else None,
            )
        )
    return reports


async def room_event(api: ModuleApi, event_id: str, room_id: str) -> EventBase | None:
    """The event as clients would get it (redacted when it was redacted), or None if it is
    unknown or in another room (a report's message, whose room Synapse does not check; an
    upgraded room's pins). ModuleApi fetches no event by its ID."""
    event: EventBase | None = await _hs(api).get_datastores().main.get_event(
        event_id, allow_none=True, check_room_id=room_id
    )
    return event


# Room upgrades (`sferumctl rooms upgrade`, synapse_sferum/upgrades.py). ModuleApi has no
# upgrade, and the module has no access token to call `POST /rooms/{id}/upgrade` with, so this
# does what that servlet does (`rest/client/room_upgrade_rest_servlet.py`): the room creation
# handler's `upgrade_room` under the purge lock's read side, as the platform's bot. Synapse then
# sends the tombstone, makes the new room, copies its state and moves the aliases, as for a
# client's upgrade; the bot's requests skip rate limits as its appservice's would.


def room_versions(api: ModuleApi) -> tuple[str, frozenset[str]]:
    """The server's default room version (`default_room_version`) and every one it knows."""
    default: str = _hs(api).config.server.default_room_version.identifier
    return default, frozenset(KNOWN_ROOM_VERSIONS)


async def upgrade_room(api: ModuleApi, user_id: str, room_id: str, version: str) -> str:
    """Upgrades the room to `version` (one of `room_versions`) as `user_id`; the new room's ID."""
    hs = _hs(api)
    requester = create_requester(user_id, authenticated_entity=api.server_name)
    async with hs.get_worker_locks_handler().acquire_read_write_lock(
        NEW_EVENT_DURING_PURGE_LOCK_NAME, room_id, write=False
    ):
        new_room_id: str = await hs.get_room_creation_handler().upgrade_room(
            requester, room_id, KNOWN_ROOM_VERSIONS[version], None, ratelimit=False
        )
    return new_room_id


# Event callbacks with only the state they read. Synapse's ThirdPartyEventRulesModuleApiCallbacks
# loads the room's whole state for every event once any module registers a `check_event_allowed`
# (`context.get_prev_state_ids()` and every one of those events) or an `on_new_event` callback
# (`get_current_state(room_id)`): O(members) per message in a school space, O(n²) while
# provisioning one. The public API takes no filter, and no other public callback will do:
# `check_event_for_spam` (handlers/message.py, non-member events only) never sees a membership
# event, and cannot replace one with the member's real name and photo. So our
# callbacks are not put in Synapse's lists: this process's instance gets its two methods wrapped
# to run ours first, each with the entries it declares (`state_needs`), then Synapse's own for
# any other module. Every worker loads the module and wraps its own. If the internals are not as
# checked here, the callbacks are registered the public way (the whole state: slower, the same
# rules), logged; a declared state that cannot be loaded refuses the event.

R = TypeVar("R")
EventVerdict = tuple[bool, dict[str, Any] | None]


def no_state(event: EventBase) -> StateNeeds:
    return NO_STATE


@attrs.frozen
class EventCallback(Generic[R]):
    """A callback of Synapse's public signature, and what it reads of the state per event."""

    run: Callable[[EventBase, StateMap[EventBase]], Awaitable[R]]
    needed_state: Callable[[EventBase], StateNeeds] = no_state


class _EventDispatch:
    """Runs the module's event callbacks in front of Synapse's own (see above)."""

    def __init__(self, hs: Any, rules: ThirdPartyEventRulesModuleApiCallbacks):
        self.checks: list[EventCallback[EventVerdict]] = []
        self.listeners: list[EventCallback[None]] = []
        self._store = hs.get_datastores().main
        self._state: StateStorageController = hs.get_storage_controllers().state
        self._synapse_check = rules.check_event_allowed
        self._synapse_on_new_event = rules.on_new_event

    async def check_event_allowed(
        self, event: EventBase, context: UnpersistedEventContextBase
    ) -> EventVerdict:
        """As Synapse's: the first refusal or replacement wins; a SynapseError is a refusal."""
        for check in self.checks:
            try:
                state = await self._prev_state(event, context, check.needed_state(event))
            except Exception:
                logger.exception("synapse_sferum: no state for %s; refusing", event.event_id)
                return False, None
            allowed, replacement = await delay_cancellation(check.run(event, state))
            if allowed is False:
                return False, None
            if isinstance(replacement, dict):
                return True, replacement
        return await self._synapse_check(event, context)

    async def _prev_state(
        self, event: EventBase, context: UnpersistedEventContextBase, needs: StateNeeds
    ) -> StateMap[EventBase]:
        """The declared entries of the state before the event (a redaction's target's too)."""
        if needs.redacted and event.redacts:
            target = await self._store.get_event(event.redacts, allow_none=True)
            if target is not None and target.is_state():
                needs = needs.with_keys([(target.type, target.state_key)])
        if not needs.keys:
            return {}
        # An unpersisted context may answer with its whole map, filter or not.
        ids = needs.select(await context.get_prev_state_ids(StateFilter.from_types(needs.keys)))
        events = await self._store.get_events(list(ids.values()))
        return {(e.type, e.state_key): e for e in events.values()}

    async def on_new_event(self, event_id: str) -> None:
        """As Synapse's: each listener's failure is logged and the others still run."""
        if self.listeners:
            await self._notify(await self._store.get_event(event_id))
        await self._synapse_on_new_event(event_id)

    async def _notify(self, event: EventBase) -> None:
        wanted: list[tuple[EventCallback[None], StateNeeds]] = []
        for listener in self.listeners:
            try:
                wanted.append((listener, listener.needed_state(event)))
            except Exception:
                logger.exception("synapse_sferum: %s skipped %s", listener.run, event.event_id)
        keys = union(needs for _, needs in wanted).keys
        state: StateMap[EventBase] = {}
        if keys:
            try:
                # Not awaiting full state, as Synapse's own: that would wait for this event.
                state = await self._state.get_current_state(
                    event.room_id, StateFilter.from_types(keys), await_full_state=False
                )
            except Exception:
                logger.exception("synapse_sferum: no state for %s; not noted", event.event_id)
                return
        for listener, needs in wanted:
            try:
                await listener.run(event, needs.select(state))
            except Exception:
                logger.exception("synapse_sferum: %s failed on %s", listener.run, event.event_id)


def _parameters(function: Any) -> list[str]:
    return [p for p in inspect.signature(function).parameters if p != "self"]


def _synapse_as_expected(rules: Any) -> bool:
    """The internals the dispatch relies on are the ones this was written against."""
    try:
        return (
            isinstance(rules, ThirdPartyEventRulesModuleApiCallbacks)
            and _parameters(rules.check_event_allowed) == ["event", "context"]
            and _parameters(rules.on_new_event) == ["event_id"]
            and _parameters(UnpersistedEventContextBase.get_prev_state_ids) == ["state_filter"]
            and {"room_id", "state_filter", "await_full_state"}
            <= set(_parameters(StateStorageController.get_current_state))
        )
    except (TypeError, ValueError):
        return False


def _event_dispatch(api: ModuleApi) -> _EventDispatch | None:
    """This process's dispatch, installed on first use; None if Synapse moved (logged)."""
    hs = _hs(api)
    rules = hs.get_module_api_callbacks().third_party_event_rules
    dispatch = getattr(rules, "_sferum_dispatch", None)
    if isinstance(dispatch, _EventDispatch):
        return dispatch
    if not _synapse_as_expected(rules):
        logger.warning(
            "synapse_sferum: Synapse's third-party rules are not as expected; event callbacks"
            " registered the public way (each event loads the room's whole state)"
        )
        return None
    dispatch = _EventDispatch(hs, rules)
    setattr(rules, "_sferum_dispatch", dispatch)  # noqa: B010 (not an attribute of its class)
    rules.check_event_allowed = dispatch.check_event_allowed
    rules.on_new_event = dispatch.on_new_event
    return dispatch


def register_event_callbacks(
    api: ModuleApi,
    *,
    check_event_allowed: EventCallback[EventVerdict] | None = None,
    on_new_event: EventCallback[None] | None = None,
) -> None:
    """`api.register_third_party_rules_callbacks` for these two, loading only what each
    callback declares it reads."""
    dispatch = _event_dispatch(api)
    if dispatch is None:
        api.register_third_party_rules_callbacks(
            check_event_allowed=check_event_allowed.run if check_event_allowed else None,
            on_new_event=on_new_event.run if on_new_event else None,
        )
        return
    if check_event_allowed is not None:
        dispatch.checks.append(check_event_allowed)
    if on_new_event is not None:
        dispatch.listeners.append(on_new_event)


def take_turns_on_schema_txn(txn: Any, key: int) -> None:
    """Within `txn` (run_db_interaction's), waits for any other process's transaction holding
    the same `key` on PostgreSQL, so that Synapse's workers, which each prepare the module's
    tables when they first need them, do it one after another: PostgreSQL's CREATE TABLE IF NOT
    EXISTS fails with a unique violation when another transaction creates the same table at
    the same moment. SQLite lets one writer at a time anyway (and a plain DB-API cursor, as
    in unit tests, has no engine). The engine is Synapse's, not the module API's, hence here."""
    if isinstance(getattr(txn, "database_engine", None), PostgresEngine):
        txn.execute("SELECT pg_advisory_xact_lock(?)", (key,))
