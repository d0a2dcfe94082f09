"""Glue between Synapse's spam-checker and third-party-rules callbacks and the pure policy.

Each callback gathers plain facts (who is who, what kind of room) and asks one policy function.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from synapse.events import EventBase
from synapse.module_api import ModuleApi, Requester, RoomAlias, StateMap, UserProfile

from sferum_shared import matrix
from sferum_shared.ids import localpart_of, server_of
from sferum_shared.model import Member
from sferum_shared.vocabulary import Key
from synapse_sferum import compat, policy
from synapse_sferum.compat import EventCallback, EventVerdict
from synapse_sferum.config import SferumConfig
from synapse_sferum.photos import Photos
from synapse_sferum.policy import polls
from synapse_sferum.refusals import (
    SPAM_REFUSAL,
    SpamCheckResult,
    fail_closed,
    forbidden,
    spam_check_result,
)
from synapse_sferum.service import DirectoryService
from synapse_sferum.state_needs import NO_STATE, StateNeeds, needs

logger = logging.getLogger(__name__)

EXPIRED: bool | None = True
EventCheck = Callable[[EventBase, StateMap[EventBase]], Awaitable[EventVerdict]]
EVENT_REFUSAL: EventVerdict = (False, None)
_STATE_REFUSAL = "The school's rules do not allow this change (see ru.sferum.reason)"
# Synapse's private_chat preset lets guests join; guests have no place in a school.
_NO_GUESTS = {
    "type": matrix.GUEST_ACCESS,
    "state_key": "",
    "content": {"guest_access": "forbidden"},
}


def event_check_needs(event: EventBase) -> StateNeeds:
    """What `Gatekeeper.check_event_allowed` reads of the state before the event."""
    if event.type == matrix.REDACTION:
        return StateNeeds(redacted=True)
    if event.is_state():
        return needs((matrix.MEMBER, event.state_key)) if event.type == matrix.MEMBER else NO_STATE
    if event.type in (matrix.POLL_START, matrix.POLL_END):
        return needs((matrix.POWER_LEVELS, ""))
    return NO_STATE


def _create_request(room_config: dict[str, Any]) -> policy.CreateRoomRequest:
    """The facts of a /createRoom body the rules judge, its `initial_state` included."""
    join_rule = guest_access = None
    encrypted = False
    names = [room_config.get("name")] if "name" in room_config else []
    initial_state = room_config.get("initial_state")
    for item in initial_state if isinstance(initial_state, list) else []:
        if not isinstance(item, dict):
            continue
        content = item.get("content")
        if not isinstance(content, dict):
            content = {}
        if item.get("type") == matrix.JOIN_RULES:
            join_rule = content.get("join_rule", "")
        elif item.get("type") == matrix.GUEST_ACCESS:
            guest_access = content.get("guest_access")
        elif item.get("type") == matrix.ENCRYPTION:
            encrypted = True
        elif item.get("type") == matrix.NAME:
            names.append(content.get("name"))
    invitees = room_config.get("invite") or []
    return policy.CreateRoomRequest(
        is_direct=bool(room_config.get("is_direct")),
        invitees=tuple(i for i in invitees if isinstance(i, str)),
        preset=room_config.get("preset"),
        visibility=room_config.get("visibility"),
        join_rule=join_rule,
        guest_access=guest_access,
        encrypted=encrypted,
        alias_localpart=room_config.get("room_alias_name"),
        names=tuple(name for name in names if isinstance(name, str)),
    )


class Gatekeeper:
    def __init__(self, api: ModuleApi, config: SferumConfig, directory: DirectoryService):
        self._api = api
        self._config = config
        self._directory = directory
        self.bot_user_id = api.get_qualified_user_id(config.bot_localpart)
        self._photos = Photos(api, directory, self.bot_user_id)

    def register(self, noting: Callable[[EventCheck], EventCheck]) -> None:
        """`noting` wraps the event check so that the files of the event as stored (after any
        replacement here) are noted against its room (`MediaGate.noting`)."""
        self._api.register_spam_checker_callbacks(
            user_may_join_room=self.user_may_join_room,
            user_may_invite=self.user_may_invite,
            federated_user_may_invite=self.federated_user_may_invite,
            user_may_create_room=self.user_may_create_room,
            user_may_create_room_alias=self.user_may_create_room_alias,
            user_may_publish_room=self.user_may_publish_room,
            check_username_for_spam=self.check_username_for_spam,
        )
        compat.limit_directory_hints(self._api)  # search must not hint at hidden people
        self._api.register_account_validity_callbacks(is_user_expired=self.is_user_expired)
        self._api.register_add_extra_fields_to_unsigned_client_event_callbacks(
            add_field_to_unsigned_callback=self.sender_role
        )
        self._photos.register()
        compat.register_event_callbacks(
            self._api,
            check_event_allowed=EventCallback(noting(self.check_event_allowed), event_check_needs),
        )
        self._api.register_third_party_rules_callbacks(
            on_create_room=self.on_create_room,
            check_visibility_can_be_modified=self.check_visibility_can_be_modified,
        )

    def _is_platform(self, user_id: str) -> bool:
        return user_id == self.bot_user_id

    async def _member(self, user_id: str) -> Member | None:
        return await self._directory.get_member(user_id)

    async def _provisioned(self, room_id: str) -> policy.ProvisionedRoom | None:
        key = await self._directory.room_key(room_id)
        if key is None:
            return None
        members = await self._directory.planned_members(room_id)
        return policy.ProvisionedRoom(key=key, desired_members=members)

    # -- spam checker ----------------------------------------------------------------------

    @fail_closed(SPAM_REFUSAL)
    async def user_may_join_room(
        self, user_id: str, room_id: str, is_invited: bool
    ) -> SpamCheckResult:
        if self._is_platform(user_id):
            return spam_check_result(policy.ALLOW)
        member = await self._member(user_id)
        room = await self._provisioned(room_id)
        members: list[Member | None] = []
        if room is None and not is_invited:
            state = await self._api.get_room_state(room_id, [(matrix.MEMBER, None)])
            members = [
                await self._member(key[1])
                for key, event in state.items()
                if event.membership == matrix.JOIN
                and key[1] != user_id
                and not self._is_platform(key[1])
            ]
        return spam_check_result(
            policy.may_join_room(member, user_id, room, invited=is_invited, members=members)
        )

    @fail_closed(SPAM_REFUSAL)
    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> SpamCheckResult:
        if self._is_platform(inviter):
            return spam_check_result(policy.ALLOW)
        invitee_member = await self._member(invitee)
        if not self._api.is_mine(inviter):
            # Synapse asks this again after federated_user_may_invite accepted a remote invite.
            return spam_check_result(
                policy.may_receive_remote_invite(
                    invitee_member, server_of(inviter) in self._config.partner_servers
                )
            )
        state = await self._api.get_room_state(
            room_id, [(matrix.CREATE, ""), (matrix.MEMBER, None)]
        )
        create = state.get((matrix.CREATE, ""))
        create_content = create.content if create is not None else {}
        members = {
            key[1]
            for key, event in state.items()
            if key[0] == matrix.MEMBER and event.membership in ("join", "invite")
        }
        invitee_remote = not self._api.is_mine(invitee)
        decision = policy.may_invite(
            inviter=await self._member(inviter),
            invitee=invitee_member,
            invitee_is_remote=invitee_remote,
            invitee_server_listed=server_of(invitee) in self._config.partner_servers,
            room=await self._provisioned(room_id),
            room_is_direct=bool(create_content.get(Key.DIRECT)),
            room_federates=create_content.get("m.federate", True) is not False,
            room_member_count=len(members),
            invitee_already_member=invitee in members,
            inviter_is_platform=False,
            invitee_is_platform=self._is_platform(invitee),
        )
        return spam_check_result(decision)

    @fail_closed(SPAM_REFUSAL)
    async def federated_user_may_invite(self, event: EventBase) -> SpamCheckResult:
        listed = server_of(event.sender) in self._config.partner_servers
        invitee = await self._member(event.state_key)
        return spam_check_result(policy.may_receive_remote_invite(invitee, listed))

    @fail_closed(SPAM_REFUSAL)
    async def user_may_create_room(
        self, user_id: str, room_config: dict[str, Any]
    ) -> SpamCheckResult:
        if self._is_platform(user_id):
            return spam_check_result(policy.ALLOW)
        request = _create_request(room_config)
        member = await self._member(user_id)
        decision = policy.may_create_room(
            member, request, allow_encrypted_dms=self._config.rules.allow_encrypted_dms
        )
        if decision.allowed:
            # The invites come right after the room exists: judged now, a refused one leaves
            # no empty room behind and says why, instead of Synapse's "Invites have been
            # disabled on this server".
            decision = await self._invitees_decision(user_id, member, request)
        return spam_check_result(decision)

    async def _invitees_decision(
        self, creator_id: str, creator: Member | None, request: policy.CreateRoomRequest
    ) -> policy.Decision:
        """`may_invite` for each invitee of a new room, as Synapse will ask once it exists."""
        local = [i for i in (creator_id, *request.invitees) if self._api.is_mine(i)]
        people = [await self._member(user_id) for user_id in local]
        has_remote = any(not self._api.is_mine(i) for i in request.invitees)
        federates = policy.room_may_federate(people, has_remote)
        for invitee in dict.fromkeys(request.invitees):
            decision = policy.may_invite(
                inviter=creator,
                invitee=await self._member(invitee),
                inviter_is_platform=False,
                invitee_is_platform=self._is_platform(invitee),
                invitee_is_remote=not self._api.is_mine(invitee),
                invitee_server_listed=server_of(invitee) in self._config.partner_servers,
                room=None,
                room_is_direct=request.is_direct,
                room_federates=federates,
                room_member_count=1,
                invitee_already_member=False,
            )
            if not decision.allowed:
                return decision
        return policy.ALLOW

    @fail_closed(SPAM_REFUSAL)
    async def user_may_create_room_alias(
        self, user_id: str, room_alias: RoomAlias
    ) -> SpamCheckResult:
        if self._is_platform(user_id):
            return spam_check_result(policy.ALLOW)
        member = await self._member(user_id)
        return spam_check_result(policy.may_create_alias(member, room_alias.localpart))

    @fail_closed(SPAM_REFUSAL)
    async def user_may_publish_room(self, user_id: str, room_id: str) -> SpamCheckResult:
        return spam_check_result(policy.may_publish_room())

    @fail_closed(True)
    async def check_username_for_spam(self, user_profile: UserProfile, requester_id: str) -> bool:
        """True hides the user from directory search: only contactable people are shown."""
        target_id = user_profile["user_id"]
        if self._is_platform(target_id):
            return True
        decision = policy.may_contact(
            await self._member(requester_id), await self._member(target_id)
        )
        return not decision.allowed

    @fail_closed(EXPIRED)
    async def is_user_expired(self, user_id: str) -> bool | None:
        """An account whose person left the roster (or was disabled there) is shut.

        Synapse then answers the account's every request with 403 ORG_MATRIX_EXPIRED_ACCOUNT
        and sends it no pushes; reconciles take it out of the provisioned rooms. If the person
        comes back, so does the account. None leaves accounts never linked to others.
        """
        if await self._directory.person_for_user(user_id) is None:
            return None
        return True if await self._member(user_id) is None else None

    async def sender_role(self, event: EventBase) -> dict[str, Any]:
        """The sender's role in `unsigned`, asserted by the server: clients cannot forge it.

        Runs for every event sent to a client, so it never raises: no answer asserts nothing.
        """
        try:
            if not self._api.is_mine(event.sender) or self._is_platform(event.sender):
                return {}
            member = await self._member(event.sender)
            return {Key.SENDER_ROLE: policy.asserted_role(member)} if member else {}
        except Exception:
            logger.exception("synapse_sferum: no sender role for %s", event.event_id)
            return {}

    # -- third-party rules -----------------------------------------------------------------

    @fail_closed(EVENT_REFUSAL)
    async def check_event_allowed(
        self, event: EventBase, state_events: StateMap[EventBase]
    ) -> tuple[bool, dict[str, Any] | None]:
        if not self._api.is_mine(event.sender):
            return self._remote_event_allowed(event)
        if event.type == matrix.REDACTION:
            return await self._redaction_allowed(event, state_events)
        if event.type in (matrix.POLL_START, matrix.POLL_END) and not event.is_state():
            return await self._poll_allowed(event, state_events)
        if not event.is_state():
            decision = policy.may_post_file(event.type, event.content)
            if not decision.allowed:
                raise forbidden(decision, "Programs and scripts cannot be sent here")
            return True, None
        is_platform = self._is_platform(event.sender)
        room = await self._provisioned(event.room_id)
        if event.type == matrix.MEMBER:
            prev = state_events.get((matrix.MEMBER, event.state_key))
            decision = policy.may_change_membership(
                event.sender,
                event.state_key,
                event.membership,
                is_platform=is_platform,
                room=room,
                prev_membership=prev.membership if prev is not None else None,
            )
            if not decision.allowed:
                raise forbidden(decision, "Membership of this room is managed by the school")
            return await self._with_real_profile(event)
        if event.type == matrix.AVATAR and not is_platform:
            await self._photos.check_avatar(event.sender, event.content.get("url", ""))
        decision = policy.may_send_state(
            event.type,
            event.content,
            sender=event.sender,
            state_key=event.state_key,
            is_platform=is_platform,
            room=room,
            allow_encrypted_dms=self._config.rules.allow_encrypted_dms,
        )
        if not decision.allowed:
            raise forbidden(decision, _STATE_REFUSAL)
        return True, None

    async def _redaction_allowed(
        self, event: EventBase, state_events: StateMap[EventBase]
    ) -> tuple[bool, dict[str, Any] | None]:
        """A redaction of the room's current state is judged as emptying that state; of
        anything else (messages, superseded state) it is left to Synapse's power levels."""
        target = next((e for e in state_events.values() if e.event_id == event.redacts), None)
        if target is None:
            return True, None
        decision = policy.may_redact_state(
            target.type,
            is_platform=self._is_platform(event.sender),
            room=await self._provisioned(event.room_id),
        )
        if not decision.allowed:
            raise forbidden(decision, _STATE_REFUSAL)
        return True, None

    async def _poll_allowed(
        self, event: EventBase, state_events: StateMap[EventBase]
    ) -> tuple[bool, dict[str, Any] | None]:
        """Who starts a poll is the room kind's rule; who ends one, MSC3381's."""
        levels_event = state_events.get((matrix.POWER_LEVELS, ""))
        levels = levels_event.content if levels_event is not None else None
        sender_level = polls.user_level(levels, event.sender)
        is_platform = self._is_platform(event.sender)
        if event.type == matrix.POLL_START:
            decision = polls.may_start_poll(
                await self._provisioned(event.room_id), sender_level, is_platform=is_platform
            )
            message = "Polls in this room are started by others"
        else:
            target = polls.related_event(event.content)
            found = await self._directory.poll(target) if target else None
            decision = polls.may_end_poll(
                found[0] if found else None,
                event.sender,
                sender_level,
                polls.redact_level(levels),
                is_platform=is_platform,
            )
            message = "Only the poll's author or a moderator ends it"
        if not decision.allowed:
            raise forbidden(decision, message)
        return True, None

    def _remote_event_allowed(self, event: EventBase) -> tuple[bool, dict[str, Any] | None]:
        """Only remote knocks reach here; nobody knocks on a school room."""
        if event.type == matrix.MEMBER and event.membership == "knock":
            return False, None
        return True, None

    async def _with_real_profile(self, event: EventBase) -> tuple[bool, dict[str, Any] | None]:
        """A joining member shows the roster's real name and their global photo, whatever the
        client put there (a per-room avatar, someone else's photo): the global one passed
        the photo rule (`photos.py`), a member event's own avatar never did."""
        user_id = event.state_key
        if event.membership != "join" or not self._api.is_mine(user_id):
            return True, None
        if self._is_platform(user_id):
            return True, None
        member = await self._member(user_id)
        profile = await self._api.get_profile_for_user(localpart_of(user_id))
        content = policy.real_profile(
            event.content,
            displayname=policy.expected_display_name(member) if member else None,
            avatar_url=profile.avatar_url,
        )
        if content is None:
            return True, None
        replacement = event.get_dict()
        replacement["content"] = content
        return True, replacement

    async def on_create_room(
        self, requester: Requester, request_content: dict[str, Any], is_requester_admin: bool
    ) -> None:
        """Marks direct chats for good, and keeps rooms with children on this server.

        Not wrapped in fail_closed: Synapse answers any exception here with a 403 itself.
        """
        creator = requester.user.to_string()
        if self._is_platform(creator):
            return
        initial_state = [
            item
            for item in request_content.get("initial_state") or []
            if not (isinstance(item, dict) and item.get("type") == matrix.GUEST_ACCESS)
        ]
        request_content["initial_state"] = [*initial_state, _NO_GUESTS]
        creation_content = request_content.setdefault("creation_content", {})
        if request_content.get("is_direct"):
            creation_content[Key.DIRECT] = True
        invitees = [i for i in request_content.get("invite") or [] if isinstance(i, str)]
        local = [user_id for user_id in [creator, *invitees] if self._api.is_mine(user_id)]
        people = [await self._member(user_id) for user_id in local]
        has_remote_invitee = any(not self._api.is_mine(user_id) for user_id in invitees)
        if not policy.room_may_federate(people, has_remote_invitee):
            creation_content["m.federate"] = False

    @fail_closed(False)
    async def check_visibility_can_be_modified(
        self, room_id: str, state_events: StateMap[EventBase], new_visibility: str
    ) -> bool:
        return new_visibility != "public"
