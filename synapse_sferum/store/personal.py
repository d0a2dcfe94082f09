"""The module's rows about one person: what `sferumctl person export` shows and `person erase`
removes or keeps (docs/identity.md, «Personal data»).

`HELD` names every table that holds a row about a person, by which column, and whether erasing
removes it; `tests/unit/test_personal_data.py` checks it against the schema, so a new table that
names a person or an account cannot be forgotten here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from sferum_shared import matrix

Txn = Any


class By(enum.Enum):
    """What a column names: the roster sourcedId, the Matrix user ID, or the verified phone."""

    PERSON = "person"
    USER = "user"
    PHONE = "phone"


@attrs.frozen
class Held:
    """One table's rows about a person: those whose `columns` (any of them) name them."""

    table: str
    columns: tuple[str, ...]
    by: By
    erased: bool
    why_kept: str = ""  # for a kept table: why erasing leaves it


HELD: tuple[Held, ...] = (
    Held("sferum_people", ("sourced_id",), By.PERSON, True),
    Held("sferum_demographics", ("sourced_id",), By.PERSON, True),
    Held("sferum_enrollments", ("person_id",), By.PERSON, True),
    Held("sferum_guardianships", ("guardian_id", "student_id"), By.PERSON, True),
    Held("sferum_links", ("person_id",), By.PERSON, True),
    Held("sferum_link_codes", ("person_id",), By.PERSON, True),
    Held("sferum_pending_links", ("person_id",), By.PERSON, True),
    Held("sferum_departures", ("person_id",), By.PERSON, True),
    Held("sferum_credentials", ("user_id",), By.USER, True),
    Held("sferum_room_members", ("user_id",), By.USER, True),
    Held("sferum_quiet_schedules", ("user_id",), By.USER, True),
    Held("sferum_quiet_silenced", ("user_id",), By.USER, True),
    Held("sferum_quiet_notices", ("user_id",), By.USER, True),
    Held("sferum_poll_votes", ("voter",), By.USER, True),
    # Articles posted in their name by `sferumctl news post`: the post itself is redacted with
    # their messages (and its copies with it), so its key may be posted again.
    Held("sferum_articles", ("author",), By.USER, True),
    Held("sferum_sms_challenges", ("msisdn",), By.PHONE, True),
    Held(
        "sferum_polls",
        ("creator",),
        By.USER,
        False,
        "опросы, которые человек начал, принадлежат комнате: их копии в новостях классов "
        "считают голоса по этой записи; само событие опроса в Synapse отозвано",
    ),
)

# Events Synapse's own redaction of a user's events leaves (it takes their messages and
# memberships only), which erasing redacts as well, as the person, with what to call them.
ALSO_REDACTED: Mapping[str, str] = {
    matrix.REACTION: "reaction(s)",
    matrix.STICKER: "sticker(s)",
    matrix.POLL_START: "poll(s)",
    matrix.POLL_RESPONSE: "poll vote(s)",
    matrix.POLL_END: "poll end(s)",
}

# Tables with no row about a person: rooms, classes, schools, mirrored news, one-off tasks,
# media's rooms, how far reported messages were relayed, upgraded rooms' successors, and the
# schema version.
UNRELATED = frozenset(
    {
        "sferum_report_marks",
        "sferum_replaced_rooms",
        "sferum_orgs",
        "sferum_classes",
        "sferum_rooms",
        "sferum_mirrors",
        "sferum_done",
        "sferum_media_rooms",
        "sferum_schema_version",
    }
)


@attrs.frozen
class Subject:
    """Who the rows are about: the person, and their account and phone if they have them."""

    person_id: str
    user_id: str | None
    msisdn: str | None

    def key(self, by: By) -> str | None:
        return {By.PERSON: self.person_id, By.USER: self.user_id, By.PHONE: self.msisdn}[by]


def subject_txn(txn: Txn, person_id: str) -> Subject:
    txn.execute("SELECT user_id, msisdn FROM sferum_links WHERE person_id = ?", (person_id,))
    row = txn.fetchone()
    return Subject(person_id, row[0] if row else None, row[1] if row else None)


def _where(held: Held) -> str:
    return " OR ".join(f"{c} = ?" for c in held.columns)


def rows_txn(txn: Txn, subject: Subject) -> dict[str, list[dict[str, Any]]]:
    """Every held table's rows about the subject, as column-to-value mappings, by table."""
    found: dict[str, list[dict[str, Any]]] = {}
    for held in HELD:
        key = subject.key(held.by)
        if key is None:
            found[held.table] = []
            continue
        txn.execute(f"SELECT * FROM {held.table} WHERE {_where(held)}", (key,) * len(held.columns))
        names = [d[0] for d in txn.description]
        found[held.table] = [dict(zip(names, row, strict=True)) for row in txn.fetchall()]
    return found


def erase_txn(txn: Txn, subject: Subject) -> dict[str, int]:
    """Deletes the erased tables' rows about the subject, in the caller's one transaction;
    returns how many went from each."""
    deleted: dict[str, int] = {}
    for held in HELD:
        key = subject.key(held.by)
        if not held.erased or key is None:
            continue
        txn.execute(f"DELETE FROM {held.table} WHERE {_where(held)}", (key,) * len(held.columns))
        deleted[held.table] = max(txn.rowcount, 0)
    return deleted


def counts(rows: Mapping[str, list[Any]], *, erased: bool) -> dict[str, int]:
    """How many of the rows erasing would remove (`erased`) or keep, by table."""
    return {h.table: len(rows.get(h.table, [])) for h in HELD if h.erased is erased}
