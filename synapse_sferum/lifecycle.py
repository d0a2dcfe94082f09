"""Accounts of people deleted from the roster are deactivated (docs/identity.md, issue 3 point 8).

A person whose every enrollment is over (the roster's `endDate`, issue 15 point 7:
policy/year_end.py) has left the same way, from that day on. From the first import without the
person (or that day) the account is already shut (the account validity callback in access.py)
and out of the provisioned rooms; after the grace period it is deactivated, which also takes it
out of every other room. The grace period protects against a roster exported with a class
missing by mistake (or an end date written wrong): putting the people back undoes everything.
"""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi

from sferum_shared import Clock
from synapse_sferum import compat
from synapse_sferum.service import DirectoryService
from synapse_sferum.store import accounts

logger = logging.getLogger(__name__)

HOUR_MS = 60 * 60 * 1000


class Departures:
    def __init__(
        self, api: ModuleApi, directory: DirectoryService, clock: Clock, grace_hours: int
    ):
        self._api = api
        self._directory = directory
        self._clock = clock
        self._grace_ms = grace_hours * HOUR_MS

    async def deactivate_due(self) -> tuple[int, int]:
        """Deactivates the accounts whose grace period ran out; returns how many were, and how
        many failed. A failure is tried again on the next run and keeps no one else waiting."""
        now = self._clock.ms()
        due = await self._directory.run(
            "sferum_due_departures",
            accounts.due_departures_txn,
            now,
            self._grace_ms,
            self._directory.today(),
        )
        failed = 0
        for person_id, user_id in sorted(due.items()):
            logger.info("synapse_sferum: %s left the school; deactivating %s", person_id, user_id)
            try:
                await compat.deactivate_account(self._api, user_id)
            except Exception:
                failed += 1
                logger.exception("synapse_sferum: could not deactivate %s", user_id)
                continue
            await self._directory.run(
                "sferum_forget_departed", accounts.forget_departed_txn, person_id, user_id
            )
            await self._directory.forget_cached([user_id])
        return len(due) - failed, failed
