"""The module's own tables in Synapse's database, versioned by `sferum_schema_version`.

Portable DDL for SQLite and PostgreSQL; flags are INTEGER 0/1 (not BOOLEAN) so both engines
take the same Python values. Each schema version is a list of statements applied once, in order.
"""

from __future__ import annotations

from typing import Any

from sferum_shared.schema import upgrade_schema_txn
from synapse_sferum import compat

SCHEMA_VERSIONS: tuple[tuple[str, ...], ...] = (
    # version 1
    (
        "CREATE TABLE IF NOT EXISTS sferum_orgs ("
        " sourced_id TEXT PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, parent_id TEXT)",
        "CREATE TABLE IF NOT EXISTS sferum_people ("
        " sourced_id TEXT PRIMARY KEY, given_name TEXT NOT NULL, family_name TEXT NOT NULL,"
        " middle_name TEXT NOT NULL, roles TEXT NOT NULL, org_ids TEXT NOT NULL,"
        " username TEXT NOT NULL, phone TEXT, email TEXT, agent_ids TEXT NOT NULL,"
        " enabled INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS sferum_demographics ("
        " sourced_id TEXT PRIMARY KEY, birth_date TEXT)",
        "CREATE TABLE IF NOT EXISTS sferum_classes ("
        " sourced_id TEXT PRIMARY KEY, title TEXT NOT NULL, org_id TEXT NOT NULL,"
        " class_type TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS sferum_enrollments ("
        " sourced_id TEXT PRIMARY KEY, class_id TEXT NOT NULL, person_id TEXT NOT NULL,"
        " role TEXT NOT NULL, is_primary INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS sferum_enrollments_person ON sferum_enrollments (person_id)",
        "CREATE INDEX IF NOT EXISTS sferum_enrollments_class ON sferum_enrollments (class_id)",
        # Derived from people.agent_ids (either side may name the other); kept for lookups.
        "CREATE TABLE IF NOT EXISTS sferum_guardianships ("
        " guardian_id TEXT NOT NULL, student_id TEXT NOT NULL,"
        " PRIMARY KEY (guardian_id, student_id))",
        "CREATE INDEX IF NOT EXISTS sferum_guardianships_student"
        " ON sferum_guardianships (student_id)",
        "CREATE TABLE IF NOT EXISTS sferum_links ("
        " person_id TEXT PRIMARY KEY, user_id TEXT NOT NULL UNIQUE, linked_ts BIGINT NOT NULL)",
        # Initial passwords of school-issued accounts (scrypt), checked by our auth provider.
        "CREATE TABLE IF NOT EXISTS sferum_credentials ("
        " user_id TEXT PRIMARY KEY, password_hash TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS sferum_rooms ("
        " kind TEXT NOT NULL, scope_id TEXT NOT NULL, room_id TEXT NOT NULL UNIQUE,"
        " PRIMARY KEY (kind, scope_id))",
        # Who the last plan put in each provisioned room: the join rule's source of truth.
        "CREATE TABLE IF NOT EXISTS sferum_room_members ("
        " room_id TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (room_id, user_id))",
        "CREATE TABLE IF NOT EXISTS sferum_mirrors ("
        " source_event_id TEXT NOT NULL, target_room_id TEXT NOT NULL,"
        " target_event_id TEXT, PRIMARY KEY (source_event_id, target_room_id))",
    ),
    # version 2: verified accounts (linking codes, phones checked by SMS)
    (
        # The verified phone an account was registered with (E.164 digits, no "+").
        "ALTER TABLE sferum_links ADD COLUMN msisdn TEXT",
        "CREATE UNIQUE INDEX IF NOT EXISTS sferum_links_msisdn ON sferum_links (msisdn)",
        # One-time linking codes; each is also a Synapse registration token with the same text.
        "CREATE TABLE IF NOT EXISTS sferum_link_codes ("
        " code TEXT PRIMARY KEY, person_id TEXT NOT NULL, created_ts BIGINT NOT NULL,"
        " expires_ts BIGINT NOT NULL, used_by TEXT, used_ts BIGINT)",
        "CREATE INDEX IF NOT EXISTS sferum_link_codes_person ON sferum_link_codes (person_id)",
        # SMS challenges behind the msisdn delegate endpoints (the code itself only hashed).
        "CREATE TABLE IF NOT EXISTS sferum_sms_challenges ("
        " sid TEXT PRIMARY KEY, client_secret TEXT NOT NULL, msisdn TEXT NOT NULL,"
        " code_hash TEXT NOT NULL, created_ts BIGINT NOT NULL, expires_ts BIGINT NOT NULL,"
        " attempts INTEGER NOT NULL, validated_ts BIGINT)",
        "CREATE INDEX IF NOT EXISTS sferum_sms_challenges_msisdn"
        " ON sferum_sms_challenges (msisdn, created_ts)",
        # A registration the module allowed (code or SSO), waiting for Synapse to create the
        # account; linked by on_user_registration, which may run on another worker.
        "CREATE TABLE IF NOT EXISTS sferum_pending_links ("
        " localpart TEXT PRIMARY KEY, person_id TEXT NOT NULL, code TEXT, msisdn TEXT,"
        " sid TEXT, created_ts BIGINT NOT NULL)",
    ),
    # version 3: quiet hours
    (
        # The enabled, valid working hours of teachers and staff, as last read from their
        # account data ru.sferum.quiet_hours (the source of truth), for the schedule loop.
        "CREATE TABLE IF NOT EXISTS sferum_quiet_schedules ("
        " user_id TEXT PRIMARY KEY, schedule TEXT NOT NULL, updated_ts BIGINT NOT NULL)",
        # Whose pushes the module has silenced (its push rule is in place): survives restarts.
        "CREATE TABLE IF NOT EXISTS sferum_quiet_silenced ("
        " user_id TEXT PRIMARY KEY, since_ts BIGINT NOT NULL)",
        # The one automatic notice per conversation, teacher and quiet period (by its start).
        "CREATE TABLE IF NOT EXISTS sferum_quiet_notices ("
        " room_id TEXT NOT NULL, user_id TEXT NOT NULL, period_start_ts BIGINT NOT NULL,"
        " sent_ts BIGINT NOT NULL, PRIMARY KEY (room_id, user_id, period_start_ts))",
        "CREATE INDEX IF NOT EXISTS sferum_quiet_notices_sent ON sferum_quiet_notices (sent_ts)",
    ),
    # version 4: accounts of people deleted from the roster
    (
        # When a linked person was first seen gone from the roster; deactivation follows after
        # `provisioning.deactivate_after_hours`, unless the person comes back first.
        "CREATE TABLE IF NOT EXISTS sferum_departures ("
        " person_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, since_ts BIGINT NOT NULL)",
    ),
    # version 5 (issue 11): cards expire, a card issued before counting from its account's
    # link; a linking code is claimed by one registration (its SMS session) at a time
    (
        "ALTER TABLE sferum_credentials ADD COLUMN issued_ts BIGINT",
        "UPDATE sferum_credentials SET issued_ts = COALESCE((SELECT l.linked_ts FROM"
        " sferum_links l WHERE l.user_id = sferum_credentials.user_id), 0)",
        "ALTER TABLE sferum_link_codes ADD COLUMN claimed_by TEXT",
        "ALTER TABLE sferum_link_codes ADD COLUMN claimed_ts BIGINT",
        # One-off tasks the module has done (e.g. taking diary rooms' aliases out of the
        # directory, which rooms made before issue 11 had).
        "CREATE TABLE IF NOT EXISTS sferum_done (task TEXT PRIMARY KEY, done_ts BIGINT NOT NULL)",
        # Which rooms each of this server's files was posted in: who may fetch it.
        "CREATE TABLE IF NOT EXISTS sferum_media_rooms ("
        " media_id TEXT NOT NULL, room_id TEXT NOT NULL, PRIMARY KEY (media_id, room_id))",
    ),
    # version 6 (issue 13): who issued each linking code: the admin API (sferumctl), or the
    # Matrix user of a class teacher who asked the platform bot
    ("ALTER TABLE sferum_link_codes ADD COLUMN issued_by TEXT",),
    # version 7 (issue 15): polls in provisioned rooms, and their votes
    (
        # Every poll started in a provisioned room. A school news poll's copies in the classes'
        # news name it as their origin: their votes count towards it. `content`: the start
        # event's JSON; `ended_ts`: when the first valid end came (votes after it do not count).
        "CREATE TABLE IF NOT EXISTS sferum_polls ("
        " event_id TEXT PRIMARY KEY, room_id TEXT NOT NULL, origin_id TEXT NOT NULL,"
        " creator TEXT NOT NULL, content TEXT NOT NULL, ended_ts BIGINT)",
        "CREATE INDEX IF NOT EXISTS sferum_polls_origin ON sferum_polls (origin_id)",
        # Each voter's latest response to a poll (by its origin), from any of its copies.
        "CREATE TABLE IF NOT EXISTS sferum_poll_votes ("
        " origin_id TEXT NOT NULL, voter TEXT NOT NULL, answers TEXT NOT NULL,"
        " ts BIGINT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (origin_id, voter))",
    ),
    # version 8 (issue 15): reports of messages reach the school's staff room
    (
        # The id of the last row of Synapse's `event_reports` told to the staff (`stream`:
        # which table of reports), so that each report is told once across restarts.
        "CREATE TABLE IF NOT EXISTS sferum_report_marks ("
        " stream TEXT PRIMARY KEY, last_id BIGINT NOT NULL)",
    ),
    # version 9 (issue 15): provisioned rooms the platform upgraded. `sferum_rooms` names the
    # replacement; the old room keeps its kind here, so its rules still hold for its history.
    (
        "CREATE TABLE IF NOT EXISTS sferum_replaced_rooms ("
        " room_id TEXT PRIMARY KEY, kind TEXT NOT NULL, scope_id TEXT NOT NULL,"
        " replacement_id TEXT NOT NULL)",
    ),
    # version 10 (issue 15): enrollments end (OneRoster endDate, YYYY-MM-DD, the last day); a
    # person whose every enrollment is over has left, a class whose every one is, is archived
    ("ALTER TABLE sferum_enrollments ADD COLUMN end_date TEXT",),
    # version 11 (issue 15): articles an admin posted into a school's news (`sferumctl news
    # post`), by the key that makes posting one again a no-op (or an edit, when the article
    # changed: `content_hash` is of what the post shows now); `author`: the sender's user ID.
    (
        "CREATE TABLE IF NOT EXISTS sferum_articles ("
        " org_id TEXT NOT NULL, article_key TEXT NOT NULL, room_id TEXT NOT NULL,"
        " event_id TEXT NOT NULL, author TEXT NOT NULL, posted_ts BIGINT NOT NULL,"
        " content_hash TEXT NOT NULL, PRIMARY KEY (org_id, article_key))",
    ),
)


# The advisory lock the processes of one deployment take turns on to prepare the tables.
SCHEMA_LOCK_KEY = 0x5FE2_0516


def prepare_schema_txn(txn: Any) -> int:
    """Brings the module's tables up to the newest version; returns that version."""
    compat.take_turns_on_schema_txn(txn, SCHEMA_LOCK_KEY)
    return upgrade_schema_txn(txn, "sferum", SCHEMA_VERSIONS, "module")
