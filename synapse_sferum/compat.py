"""The one place that reaches past Synapse's public module API.

Each function here says why no public route exists. tests/module/test_compat.py checks every
assumption against the installed Synapse and fails loudly if an upgrade changes one; the
integration tests exercise them against real servers.
"""

from __future__ import annotations

import json
from typing import Any, cast

from synapse.api.errors import StoreError
from synapse.module_api import ModuleApi
from synapse.push.rulekinds import PRIORITY_CLASS_MAP
from synapse.types import create_requester
from synapse.util.clock import Clock
from twisted.internet import reactor

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

QUIET_RULE_ID = "ru.sferum.quiet_hours"
QUIET_RULE = f"global/override/{QUIET_RULE_ID}"  # as Synapse namespaces a rule in its table


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


async def deactivate_account(api: ModuleApi, user_id: str) -> None:
    """Deactivates an account as Synapse's admin API does: devices, tokens, phones and pushers
    go, and Synapse's background parter takes the user out of every room, DMs included.

    ModuleApi can neither deactivate nor list a user's rooms, so this goes through the
    homeserver's deactivation handler (`synapse/handlers/deactivate_account.py`).
    """
    hs = _hs(api)
    requester = create_requester(user_id, authenticated_entity=api.server_name)
    await hs.get_deactivate_account_handler().deactivate_account(
        user_id, erase_data=False, requester=requester, by_admin=True
    )
