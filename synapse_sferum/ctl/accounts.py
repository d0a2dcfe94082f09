"""`sferumctl accounts issue`: accounts the school hands out, e.g. to young pupils
(docs/identity.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs

from sferum_shared.adminapi import IssuedAccount, parse_accounts
from synapse_sferum.ctl.adminapi import call, parsed
from synapse_sferum.ctl.deployment import Deployment
from synapse_sferum.ctl.tables import format_table

ALREADY_LINKED = "(already linked)"


def fetch_accounts(
    deployment: Deployment, *, persons: Sequence[str] = (), class_id: str | None = None
) -> list[IssuedAccount]:
    """Asks the platform for accounts; passwords come only for accounts made now."""
    response = call(deployment, lambda api: api.issue_accounts(persons=persons, class_id=class_id))
    return parsed(parse_accounts, response)


def reset_accounts(deployment: Deployment, persons: Sequence[str]) -> list[IssuedAccount]:
    """New cards for these people's accounts; every other way into them is closed."""
    response = call(deployment, lambda api: api.reset_accounts(persons=persons))
    return parsed(parse_accounts, response)


def issue_accounts(
    deployment: Deployment, *, persons: Sequence[str], class_id: str | None, output: str
) -> list[str]:
    """Issues accounts; `output` is "text" (a table) or "json"."""
    return account_lines(fetch_accounts(deployment, persons=persons, class_id=class_id), output)


def account_lines(accounts: Sequence[IssuedAccount], output: str) -> list[str]:
    """A table (`output` "text") or JSON of accounts and their one-time passwords."""
    if output == "json":
        return [json.dumps([attrs.asdict(a) for a in accounts], ensure_ascii=False, indent=2)]
    return format_table(
        ["person", "user ID", "password"],
        [
            [a.person, a.user_id, ALREADY_LINKED if a.password is None else a.password]
            for a in accounts
        ],
    )
