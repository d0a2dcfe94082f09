"""Transactions for verified accounts: applicants' facts, linking codes, SMS challenges."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from sferum_shared.model import Person, Role
from synapse_sferum.policy.identity import Applicant, LinkCode
from synapse_sferum.policy.phone import SmsChallenge, msisdn_of_e164
from synapse_sferum.store.records import DEMOGRAPHICS, PEOPLE

Txn = Any


class LinkConflict(Exception):
    """The code was used, or the person or phone linked, by someone else meanwhile."""


def person_txn(txn: Txn, person_id: str) -> Person | None:
    txn.execute(f"{PEOPLE.select_sql()} WHERE sourced_id = ?", (person_id,))
    row = txn.fetchone()
    return PEOPLE.from_row(tuple(row)) if row else None


def person_with_phone_txn(txn: Txn, e164: str) -> list[str]:
    """The roster people whose phone is this number (SSO may identify people by phone)."""
    txn.execute("SELECT sourced_id FROM sferum_people WHERE phone = ?", (e164,))
    return [row[0] for row in txn.fetchall()]


def applicant_txn(txn: Txn, person_id: str) -> Applicant:
    txn.execute(f"{PEOPLE.select_sql()} WHERE sourced_id = ?", (person_id,))
    row = txn.fetchone()
    if row is None:
        return Applicant(person_id=person_id, in_directory=False)
    person = PEOPLE.from_row(tuple(row))
    txn.execute(f"{DEMOGRAPHICS.select_sql()} WHERE sourced_id = ?", (person_id,))
    demo_row = txn.fetchone()
    txn.execute("SELECT 1 FROM sferum_links WHERE person_id = ?", (person_id,))
    has_account = txn.fetchone() is not None
    txn.execute(
        "SELECT p.phone, l.msisdn FROM sferum_guardianships g"
        " JOIN sferum_people p ON p.sourced_id = g.guardian_id"
        " LEFT JOIN sferum_links l ON l.person_id = g.guardian_id"
        " WHERE g.student_id = ?",
        (person_id,),
    )
    guardian_msisdns: set[str] = set()
    for roster_phone, account_msisdn in txn.fetchall():
        if roster_phone:
            guardian_msisdns.add(msisdn_of_e164(roster_phone))
        if account_msisdn:
            guardian_msisdns.add(account_msisdn)
    return Applicant(
        person_id=person_id,
        in_directory=True,
        enabled=person.enabled,
        is_student=Role.STUDENT in person.roles,
        birth_date=DEMOGRAPHICS.from_row(tuple(demo_row)).birth_date if demo_row else None,
        has_account=has_account,
        guardian_msisdns=frozenset(guardian_msisdns),
    )


def phone_owner_txn(txn: Txn, msisdn: str) -> str | None:
    txn.execute("SELECT user_id FROM sferum_links WHERE msisdn = ?", (msisdn,))
    row = txn.fetchone()
    return row[0] if row else None


def insert_codes_txn(txn: Txn, codes: Iterable[LinkCode], now_ms: int, issued_by: str) -> None:
    for code in codes:
        txn.execute(
            "INSERT INTO sferum_link_codes (code, person_id, created_ts, expires_ts, issued_by)"
            " VALUES (?, ?, ?, ?, ?)",
            (code.code, code.person_id, now_ms, code.expires_ms, issued_by),
        )


def link_code_txn(txn: Txn, code: str) -> LinkCode | None:
    txn.execute(
        "SELECT code, person_id, expires_ts, used_by FROM sferum_link_codes WHERE code = ?",
        (code,),
    )
    row = txn.fetchone()
    return (
        LinkCode(code=row[0], person_id=row[1], expires_ms=row[2], used_by=row[3]) if row else None
    )


def link_with_code_txn(
    txn: Txn, code: str, person_id: str, user_id: str, msisdn: str | None, now_ms: int
) -> None:
    """Uses the code up and links the account, or changes nothing (LinkConflict)."""
    txn.execute(
        "UPDATE sferum_link_codes SET used_by = ?, used_ts = ?"
        " WHERE code = ? AND person_id = ? AND used_by IS NULL",
        (user_id, now_ms, code, person_id),
    )
    if txn.rowcount != 1:
        raise LinkConflict(f"linking code for {person_id} was used meanwhile")
    link_new_account_txn(txn, person_id, user_id, msisdn, now_ms)


def link_new_account_txn(
    txn: Txn, person_id: str, user_id: str, msisdn: str | None, now_ms: int
) -> None:
    txn.execute(
        "SELECT 1 FROM sferum_links WHERE person_id = ? OR user_id = ? OR msisdn = ?",
        (person_id, user_id, msisdn),
    )
    if txn.fetchone() is not None:
        raise LinkConflict(f"{person_id}, {user_id} or the phone is linked already")
    txn.execute(
        "INSERT INTO sferum_links (person_id, user_id, linked_ts, msisdn) VALUES (?, ?, ?, ?)",
        (person_id, user_id, now_ms, msisdn),
    )


def _challenge_from(row: Any) -> SmsChallenge:
    return SmsChallenge(*row)


_CHALLENGE_COLUMNS = (
    "sid, client_secret, msisdn, code_hash, created_ts, expires_ts, attempts, validated_ts"
)


def insert_challenge_txn(txn: Txn, c: SmsChallenge) -> None:
    txn.execute(
        f"INSERT INTO sferum_sms_challenges ({_CHALLENGE_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            c.sid,
            c.client_secret,
            c.msisdn,
            c.code_hash,
            c.created_ms,
            c.expires_ms,
            c.attempts,
            c.validated_ms,
        ),
    )


def challenge_txn(txn: Txn, sid: str) -> SmsChallenge | None:
    txn.execute(f"SELECT {_CHALLENGE_COLUMNS} FROM sferum_sms_challenges WHERE sid = ?", (sid,))
    row = txn.fetchone()
    return _challenge_from(tuple(row)) if row else None


def lock_challenge_txn(txn: Txn, sid: str) -> SmsChallenge | None:
    """The challenge, read after taking its row: a concurrent submission of the same sid waits
    until this transaction ends and then reads what it left (run it with `run_exclusive`)."""
    txn.execute("UPDATE sferum_sms_challenges SET attempts = attempts WHERE sid = ?", (sid,))
    return challenge_txn(txn, sid)


def claim_code_txn(txn: Txn, code: str, sid: str, now_ms: int, stale_before_ms: int) -> bool:
    """Binds an unused code to one registration (its SMS session), unless another holds it
    since `stale_before_ms`; returns whether this one has it now (run with `run_exclusive`)."""
    txn.execute(
        "UPDATE sferum_link_codes SET claimed_by = ?, claimed_ts = ?"
        " WHERE code = ? AND used_by IS NULL"
        " AND (claimed_by IS NULL OR claimed_by = ? OR claimed_ts < ?)",
        (sid, now_ms, code, sid, stale_before_ms),
    )
    return bool(txn.rowcount == 1)


def update_challenge_txn(txn: Txn, c: SmsChallenge) -> None:
    txn.execute(
        "UPDATE sferum_sms_challenges SET attempts = ?, validated_ts = ? WHERE sid = ?",
        (c.attempts, c.validated_ms, c.sid),
    )


def recent_sends_txn(txn: Txn, msisdn: str, since_ms: int) -> list[int]:
    txn.execute(
        "SELECT created_ts FROM sferum_sms_challenges WHERE msisdn = ? AND created_ts >= ?",
        (msisdn, since_ms),
    )
    return [row[0] for row in txn.fetchall()]


def recent_sends_total_txn(txn: Txn, since_ms: int, at_most: int) -> list[int]:
    """When the newest `at_most` SMS since `since_ms` went out, to any number."""
    txn.execute(
        "SELECT created_ts FROM sferum_sms_challenges WHERE created_ts >= ?"
        " ORDER BY created_ts DESC LIMIT ?",
        (since_ms, at_most),
    )
    return [row[0] for row in txn.fetchall()]


def spend_challenge_txn(txn: Txn, sid: str, max_attempts: int) -> None:
    """A checked number whose registration was refused or done: it cannot serve again."""
    txn.execute(
        "UPDATE sferum_sms_challenges SET validated_ts = NULL, attempts = ? WHERE sid = ?",
        (max_attempts, sid),
    )


@attrs.frozen
class PendingLink:
    localpart: str
    person_id: str
    code: str | None = None
    msisdn: str | None = None
    sid: str | None = None


def put_pending_link_txn(txn: Txn, pending: PendingLink, now_ms: int) -> None:
    txn.execute("DELETE FROM sferum_pending_links WHERE localpart = ?", (pending.localpart,))
    txn.execute(
        "INSERT INTO sferum_pending_links (localpart, person_id, code, msisdn, sid, created_ts)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (pending.localpart, pending.person_id, pending.code, pending.msisdn, pending.sid, now_ms),
    )


def take_pending_link_txn(txn: Txn, localpart: str, since_ms: int) -> PendingLink | None:
    txn.execute(
        "SELECT localpart, person_id, code, msisdn, sid FROM sferum_pending_links"
        " WHERE localpart = ? AND created_ts >= ?",
        (localpart, since_ms),
    )
    row = txn.fetchone()
    txn.execute("DELETE FROM sferum_pending_links WHERE localpart = ?", (localpart,))
    return PendingLink(*row) if row else None


def delete_challenges_before_txn(txn: Txn, before_ms: int) -> None:
    txn.execute("DELETE FROM sferum_sms_challenges WHERE created_ts < ?", (before_ms,))


def delete_challenge_txn(txn: Txn, sid: str) -> None:
    txn.execute("DELETE FROM sferum_sms_challenges WHERE sid = ?", (sid,))
