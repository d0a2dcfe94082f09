"""The teacher's invite links: «коды 5А» to the platform bot in a one-to-one chat with it.

The glue around `policy.invites`: it picks the command out of new events (the bot is in the
chat already: it joins a school adult's chat when invited, `quiet_hours`), decides with the
directory's facts, issues the codes through the registrar (each kept with the teacher's user
ID, who issued it), and answers with a link per person. One instance acts: the one that runs
background tasks.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from synapse.module_api import EventBase, ModuleApi
from synapse.types import StateMap

from synapse_sferum.botchat import is_chat_with_bot, say
from synapse_sferum.directory import guardianship_pairs
from synapse_sferum.model import EnrollmentRole
from synapse_sferum.policy.invites import (
    HELP_TEXT,
    ClassFacts,
    CodesCommand,
    Invitation,
    codes_refusal,
    codes_reply,
    find_class,
    join_link,
    parse_codes_command,
)
from synapse_sferum.registration import Registrar
from synapse_sferum.roster.merge import DirectorySnapshot
from synapse_sferum.service import DirectoryService

logger = logging.getLogger(__name__)


def class_facts(snapshot: DirectorySnapshot) -> list[ClassFacts]:
    teachers: dict[str, set[str]] = {}
    for e in snapshot.enrollments.values():
        if e.role is not EnrollmentRole.STUDENT and e.primary:
            teachers.setdefault(e.class_id, set()).add(e.person_id)
    return [
        ClassFacts(c.sourced_id, c.title, c.org_id, frozenset(teachers.get(c.sourced_id, ())))
        for c in snapshot.classes.values()
    ]


def families_of(snapshot: DirectorySnapshot, class_id: str) -> list[str]:
    """The class's pupils, then their guardians: whom a class teacher invites."""
    pupils = sorted(
        e.person_id
        for e in snapshot.enrollments.values()
        if e.class_id == class_id and e.role is EnrollmentRole.STUDENT
    )
    guardians = sorted(
        {guardian for guardian, pupil in guardianship_pairs(snapshot.people) if pupil in pupils}
    )
    return pupils + [g for g in guardians if g not in pupils]


class TeacherInvites:
    def __init__(
        self,
        api: ModuleApi,
        directory: DirectoryService,
        registrar: Registrar,
        bot: str,
        expiry_days: int,
    ) -> None:
        self._api = api
        self._directory = directory
        self._registrar = registrar
        self._bot = bot
        self._expiry_days = expiry_days

    def register(self) -> None:
        self._api.register_third_party_rules_callbacks(on_new_event=self.on_new_event)

    async def on_new_event(self, event: EventBase, state_events: StateMap[EventBase]) -> None:
        try:
            if not self._api.should_run_background_tasks() or event.sender == self._bot:
                return
            if event.type != "m.room.message" or event.is_state():
                return
            if not self._api.is_mine(event.sender) or event.content.get("msgtype") != "m.text":
                return
            body = event.content.get("body")
            command = parse_codes_command(body) if isinstance(body, str) else None
            if command is None or not is_chat_with_bot(state_events, event.sender, self._bot):
                return
            self._api.run_as_background_process(
                "sferum_invite_codes", self._logged, event, command
            )
        except Exception:
            logger.exception("synapse_sferum: invite codes skipped %s", event.event_id)

    async def _logged(self, event: EventBase, command: CodesCommand) -> None:
        try:
            await self._answer(event, command)
        except Exception:
            logger.exception("synapse_sferum: invite codes failed on %s", event.event_id)
            failed = "Не получилось выдать коды; попробуйте позже."
            await say(self._api, self._bot, event.room_id, failed)

    async def _answer(self, event: EventBase, command: CodesCommand) -> None:
        if not command.class_title:
            await say(self._api, self._bot, event.room_id, HELP_TEXT)
            return
        member = await self._directory.get_member(event.sender)
        snapshot = await self._directory.snapshot()
        org_ids = member.org_ids if member is not None else frozenset()
        found = find_class(command.class_title, class_facts(snapshot), org_ids)
        refusal = codes_refusal(member, found, command.class_title)
        if refusal is not None or found is None:
            logger.info(
                "synapse_sferum: no codes for %s in %r: %s",
                event.sender,
                command.class_title,
                refusal,
            )
            await say(self._api, self._bot, event.room_id, refusal or "")
            return
        issued, skipped = await self._registrar.issue_codes(
            families_of(snapshot, found.class_id),
            None,
            issued_by=event.sender,
            skip_refused=True,
        )
        base = self._api.public_baseurl
        invitations = [Invitation(c.name, join_link(base, c.code)) for c in issued]
        names = [_name(snapshot, r.person_id) for r in skipped]
        expires = self._directory.today() + timedelta(days=self._expiry_days)
        await say(
            self._api,
            self._bot,
            event.room_id,
            codes_reply(found.title, invitations, names, expires),
        )


def _name(snapshot: DirectorySnapshot, person_id: str) -> str:
    person = snapshot.people.get(person_id)
    return person.real_name if person is not None else person_id
