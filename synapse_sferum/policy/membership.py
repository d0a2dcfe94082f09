"""Who joins, leaves and invites (docs/rooms-and-rules.md: closed rooms, who may contact whom).

A provisioned room's members follow the directory; the platform adds and removes them. Users'
own rooms take whoever `may_contact` allows, and partner schools' staff only where no pupil or
family of ours can meet them.
"""

from __future__ import annotations

from collections.abc import Sequence

from sferum_shared import matrix
from sferum_shared.model import Member
from sferum_shared.vocabulary import Reason
from synapse_sferum.policy.contact import may_contact
from synapse_sferum.policy.decision import ALLOW, Decision, refuse
from synapse_sferum.policy.events import ProvisionedRoom


def may_change_membership(
    sender: str,
    target: str,
    membership: str,
    *,
    is_platform: bool,
    room: ProvisionedRoom | None,
    prev_membership: str | None,
) -> Decision:
    """May `sender` set `target`'s membership? Judges every membership event, local or federated.

    Knocking is refused everywhere: it would put a stranger's name and message in front of a
    room's members, a contact `may_contact` never judged. Outside provisioned rooms the rest is
    left to Synapse, and invites to `may_invite`. In a provisioned room people join where the
    directory puts them, leave only once it no longer does, and nobody but the platform invites,
    kicks or bans; except in the staff room, whose invites `may_invite` judges, and whoever it
    let in may join on the invite.
    """
    if membership == matrix.KNOCK:
        return refuse(Reason.NO_KNOCKING)
    if room is None or is_platform:
        return ALLOW
    if membership == matrix.INVITE and room.admits_partners:
        return ALLOW
    if membership == matrix.JOIN:
        invited_partner = room.admits_partners and prev_membership == matrix.INVITE
        if target in room.desired_members or invited_partner:
            return ALLOW
        return refuse(Reason.NOT_ROOM_MEMBER)
    if membership == matrix.LEAVE and sender == target and target not in room.desired_members:
        return ALLOW
    return refuse(Reason.MANAGED_MEMBERSHIP)


def may_join_room(
    member: Member | None,
    user_id: str,
    room: ProvisionedRoom | None,
    *,
    invited: bool = True,
    members: Sequence[Member | None] = (),
) -> Decision:
    """A local account asks to join: only once linked to a person (no join by an unverified
    account), and a provisioned room only where the directory puts it. An invite changes nothing
    there: only partners, who are remote, join a provisioned room on an invite.

    A room of users' own takes nobody uninvited (its join rule must be `invite`); should it let
    someone in anyway (a rule set before the school closed it, a room from elsewhere), joining
    is contact with its `members` (those joined now), which `may_contact` judges one by one.
    """
    if member is None:
        return refuse(Reason.UNLINKED_SENDER)
    if room is None and not invited:
        for other in members:
            decision = may_contact(member, other)
            if not decision.allowed:
                return decision
    return may_change_membership(
        user_id, user_id, matrix.JOIN, is_platform=False, room=room, prev_membership=None
    )


def may_invite(
    inviter: Member | None,
    invitee: Member | None,
    *,
    inviter_is_platform: bool,
    invitee_is_platform: bool = False,
    invitee_is_remote: bool,
    invitee_server_listed: bool,
    room: ProvisionedRoom | None,
    room_is_direct: bool,
    room_federates: bool,
    room_member_count: int,
    invitee_already_member: bool,
) -> Decision:
    """May a local `inviter` invite `invitee`? None is someone outside our directory.

    The platform invites anyone. A DM never gets a third person. Teachers and staff may bring
    the platform's bot into their own rooms (it answers commands such as quiet hours); nobody
    else may, as the bot is no person of the directory. Local invitees are judged by
    `may_contact`, and only outside provisioned rooms (whose members the platform keeps); a room
    that federates (`m.federate`) takes our school adults only, as partners may be in it.
    """
    if inviter_is_platform:
        return ALLOW
    if room_is_direct and room_member_count >= 2 and not invitee_already_member:
        return refuse(Reason.DM_THIRD_PERSON)
    if invitee_is_remote:
        return _may_invite_partner(
            inviter, invitee_server_listed, room, room_is_direct, room_federates
        )
    if room is not None:
        return refuse(Reason.MANAGED_MEMBERSHIP)
    if invitee_is_platform:
        if inviter is not None and inviter.is_school_adult:
            return ALLOW
        return refuse(Reason.UNLINKED_SENDER if inviter is None else Reason.NOT_RELATED)
    if room_federates and invitee is not None and not invitee.is_school_adult:
        return refuse(Reason.SHARED_WITH_PARTNERS)
    return may_contact(inviter, invitee)


def _may_invite_partner(
    inviter: Member | None,
    server_listed: bool,
    room: ProvisionedRoom | None,
    room_is_direct: bool,
    room_federates: bool,
) -> Decision:
    """Our teachers and staff bring listed partner schools' staff into the staff room and their
    own federating groups: never into DMs or other provisioned rooms, where our pupils and
    families are."""
    if inviter is None:
        return refuse(Reason.UNLINKED_SENDER)
    if room is not None and not room.admits_partners:
        return refuse(Reason.MANAGED_MEMBERSHIP)
    if room_is_direct or not inviter.is_school_adult:
        return refuse(Reason.REMOTE_NOT_ALLOWED)
    if not server_listed:
        return refuse(Reason.SERVER_NOT_LISTED)
    if not room_federates:
        return refuse(Reason.ROOM_NOT_FEDERATED)
    return ALLOW


def may_receive_remote_invite(invitee: Member | None, inviter_server_listed: bool) -> Decision:
    """Someone on another server invites one of ours: only a listed partner school, and only our
    teachers and staff; nobody outside the directory reaches pupils or families."""
    if not inviter_server_listed:
        return refuse(Reason.SERVER_NOT_LISTED)
    if invitee is None:
        return refuse(Reason.UNLINKED_TARGET)
    if not invitee.is_school_adult:
        return refuse(Reason.REMOTE_NOT_ALLOWED)
    return ALLOW
