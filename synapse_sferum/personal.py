"""A person's data on the platform, for the rights a school serves under 152-ФЗ: a copy of it
(`sferumctl person export`) and its erasure (`sferumctl person erase`); docs/identity.md.

The module does server-side what sferumctl has no Synapse admin token for: it reads its own rows
and the account's uploads, runs Synapse's redaction of the account's events, and erases. The CLI
orders the steps and tells the operator what each did.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from sferum_shared.matrix import REDACTION
from synapse_sferum import compat
from synapse_sferum.provisioner import Provisioner
from synapse_sferum.sending import send_event
from synapse_sferum.service import DirectoryService
from synapse_sferum.store import personal

logger = logging.getLogger(__name__)

REDACT_BATCH = 100  # events redacted per request of `sferumctl person erase`


class UnknownPerson(Exception):
    """No table of the module has a row about this person."""


class NoAccount(Exception):
    """The person has no account to erase."""


class PersonalData:
    def __init__(self, api: ModuleApi, directory: DirectoryService, provisioner: Provisioner):
        self._api = api
        self._directory = directory
        self._provisioner = provisioner

    async def _known(self, person_id: str) -> tuple[personal.Subject, dict[str, Any]]:
        subject = await self._directory.run(
            "sferum_person_subject", personal.subject_txn, person_id
        )
        rows = await self._directory.run("sferum_person_rows", personal.rows_txn, subject)
        if not any(rows.values()):
            raise UnknownPerson(person_id)
        return subject, rows

    async def data(self, person_id: str) -> dict[str, Any]:
        """The module's rows about the person, the account's uploads (metadata only), and how
        many of its events of `ALSO_REDACTED`'s types are not redacted yet, by type."""
        subject, rows = await self._known(person_id)
        user_id = subject.user_id
        media = [] if user_id is None else await compat.user_media(self._api, user_id)
        other: dict[str, int] = {}
        if user_id is not None:
            types = list(personal.ALSO_REDACTED)
            other = await self._directory.run(
                "sferum_person_events", compat.unredacted_counts_txn, user_id, types
            )
        return {
            "person": person_id,
            "user_id": user_id,
            "tables": rows,
            "media": media,
            "other_events": other,
        }

    async def _account(self, person_id: str) -> tuple[personal.Subject, str]:
        subject, _ = await self._known(person_id)
        if subject.user_id is None:
            raise NoAccount(person_id)
        return subject, subject.user_id

    async def start_redaction(self, person_id: str) -> str:
        """Starts redacting the account's events everywhere; the task's ID to poll."""
        _, user_id = await self._account(person_id)
        logger.info("synapse_sferum: erasing %s: redacting %s's events", person_id, user_id)
        return await compat.start_redacting_events(self._api, user_id)

    async def redact_more(self, person_id: str) -> dict[str, Any]:
        """Redacts, as the person, up to `REDACT_BATCH` of their events that Synapse's task
        leaves (`ALSO_REDACTED`: reactions, stickers, polls and votes) in the rooms they are in;
        `more`: call again. A redaction the server refuses is reported and stops the batch."""
        _, user_id = await self._account(person_id)
        rooms = await compat.joined_rooms(self._api, user_id)
        events = await self._directory.run(
            "sferum_person_other_events",
            compat.unredacted_events_txn,
            user_id,
            list(personal.ALSO_REDACTED),
            rooms,
            REDACT_BATCH,
        )
        redacted: dict[str, int] = {}
        for room_id, event_id, event_type in events:
            try:
                await send_event(
                    self._api, user_id, room_id, REDACTION, {"redacts": event_id}, redacts=event_id
                )
            except SynapseError as e:
                failed = {"event_id": event_id, "type": event_type, "reason": e.msg}
                return {"redacted": redacted, "failed": [failed], "more": False}
            redacted[event_type] = redacted.get(event_type, 0) + 1
        return {"redacted": redacted, "failed": [], "more": len(events) == REDACT_BATCH}

    async def redaction_status(self, redact_id: str) -> dict[str, Any] | None:
        return await compat.redact_status(self._api, redact_id)

    async def erase(self, person_id: str) -> dict[str, Any]:
        """Deletes the account's uploads, deactivates it with erasure, then removes the
        module's rows about the person in one transaction. Each step is safe to repeat, and the
        rows go last, so a failure half-way leaves what a second run needs to find the account."""
        subject, user_id = await self._account(person_id)
        media_ids = [m["media_id"] for m in await compat.user_media(self._api, user_id)]
        media_deleted = await compat.delete_media(self._api, media_ids) if media_ids else 0
        logger.info("synapse_sferum: erasing %s: deactivating %s", person_id, user_id)
        await compat.deactivate_account(self._api, user_id, erase=True)
        deleted = await self._directory.run("sferum_person_erase", personal.erase_txn, subject)
        await self._directory.forget_cached([user_id])
        self._provisioner.request()
        return {"user_id": user_id, "media_deleted": media_deleted, "rows_deleted": deleted}
