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

from synapse_sferum import compat
from synapse_sferum.provisioner import Provisioner
from synapse_sferum.service import DirectoryService
from synapse_sferum.store import personal

logger = logging.getLogger(__name__)


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
        """The module's rows about the person and the account's uploads (metadata only)."""
        subject, rows = await self._known(person_id)
        user_id = subject.user_id
        media = [] if user_id is None else await compat.user_media(self._api, user_id)
        return {"person": person_id, "user_id": user_id, "tables": rows, "media": media}

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
