"""The one place that reaches past Synapse's public module API.

Each function here says why no public route exists. tests/module/test_compat.py checks every
assumption against the installed Synapse and fails loudly if an upgrade changes one; the
integration tests exercise them against real servers.
"""

from __future__ import annotations

import json
from typing import Any, cast

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
