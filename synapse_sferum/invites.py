"""The teacher's invite links: «коды 5А» to the platform bot in a one-to-one chat with it, or
the staff room's widget, a page (`/join/codes`) that asks the client for an OpenID token.

The glue around `policy.invites`: it picks the command out of new events (the bot is in the
chat already: it joins a school adult's chat when invited, `quiet_hours`), decides with the
directory's facts, issues the codes through the registrar (each kept with the teacher's user
ID, who issued it), and answers with a link per person. One instance acts: the one that runs
background tasks.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import attrs
from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import Codes, SynapseError
from synapse.types import StateMap

from sferum_shared import Clock, matrix
from sferum_shared.model import EnrollmentRole
from synapse_sferum import compat
from synapse_sferum.botchat import is_chat_with_bot, say
from synapse_sferum.compat import EventCallback
from synapse_sferum.directory import guardianship_pairs
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
from synapse_sferum.state_needs import NO_STATE, StateNeeds, needs

logger = logging.getLogger(__name__)


def codes_state_needs(event: EventBase) -> StateNeeds:
    """A codes command is answered in the sender's chat with the bot alone: the room's members
    are read for it, and for nothing else."""
    if event.type != matrix.MESSAGE or event.is_state():
        return NO_STATE
    body = event.content.get("body")
    if not isinstance(body, str) or parse_codes_command(body) is None:
        return NO_STATE
    return needs((matrix.MEMBER, None))


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
        clock: Clock,
    ) -> None:
        self._api = api
        self._directory = directory
        self._registrar = registrar
        self._bot = bot
        self._expiry_days = expiry_days
        self._clock = clock

    def register(self) -> None:
        compat.register_event_callbacks(
            self._api, on_new_event=EventCallback(self.on_new_event, codes_state_needs)
        )

    async def issue_from_page(self, body: dict[str, Any]) -> dict[str, Any]:
        """The staff room's page (`POST /join/codes/issue`, served by `join`): the OpenID
        token its client gave says who asks."""
        token, title = body.get("openid_token"), body.get("class")
        if not isinstance(token, str) or not token:
            raise SynapseError(
                400, "'openid_token' must be a non-empty string", Codes.INVALID_PARAM
            )
        if not isinstance(title, str) or not title.strip():
            raise SynapseError(400, "Напишите класс, например 5А.", Codes.INVALID_PARAM)
        user_id = await self._directory.run(
            "sferum_openid_user", compat.openid_user_txn, token, self._clock.ms()
        )
        if user_id is None:
            raise SynapseError(
                401, "Вход не подтверждён: откройте страницу заново.", Codes.UNKNOWN_TOKEN
            )
        issued = await self.codes_for(user_id, title.strip())
        if isinstance(issued, str):
            raise SynapseError(403, issued, Codes.FORBIDDEN)
        return {
            "class": issued.title,
            "expires": issued.expires.isoformat(),
            "invitations": [attrs.asdict(i) for i in issued.invitations],
            "skipped": issued.skipped,
        }

    async def on_new_event(self, event: EventBase, state_events: StateMap[EventBase]) -> None:
        try:
            if not self._api.should_run_background_tasks() or event.sender == self._bot:
                return
            if event.type != matrix.MESSAGE or event.is_state():
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
        issued = await self.codes_for(event.sender, command.class_title)
        text = (
            issued
            if isinstance(issued, str)
            else codes_reply(*attrs.astuple(issued, recurse=False))
        )
        await say(self._api, self._bot, event.room_id, text)

    async def codes_for(self, user_id: str, class_title: str) -> IssuedInvitations | str:
        """New codes for the families of the class `user_id` names, issued by them; or, in
        Russian, why not. Shared by the bot's chat and the staff room's page."""
        member = await self._directory.get_member(user_id)
        snapshot = await self._directory.snapshot()
        org_ids = member.org_ids if member is not None else frozenset()
        found = find_class(class_title, class_facts(snapshot), org_ids)
        refusal = codes_refusal(member, found, class_title)
        if refusal is not None or found is None:
            logger.info("synapse_sferum: no codes for %s in %r: %s", user_id, class_title, refusal)
            return refusal or ""
        issued, skipped = await self._registrar.issue_codes(
            families_of(snapshot, found.class_id), None, issued_by=user_id, skip_refused=True
        )
        base = self._api.public_baseurl
        return IssuedInvitations(
            found.title,
            [Invitation(c.name, join_link(base, c.code)) for c in issued],
            [_name(snapshot, r.person_id) for r in skipped],
            self._directory.today() + timedelta(days=self._expiry_days),
        )


@attrs.frozen
class IssuedInvitations:
    """What a teacher gets: the class's title, a link per person, who got none, and until
    when the links work."""

    title: str
    invitations: list[Invitation]
    skipped: list[str]
    expires: date


def _name(snapshot: DirectorySnapshot, person_id: str) -> str:
    person = snapshot.people.get(person_id)
    return person.real_name if person is not None else person_id
