"""The platform's rules as pure functions over plain frozen data (docs/rooms-and-rules.md,
docs/changing.md).

No Synapse import and no I/O: the module's glue gathers the facts, asks one function here, and
turns the `Decision` into Synapse's answer. So every rule is tested with tables of cases.
"""

from sferum_shared.vocabulary import Reason
from synapse_sferum.policy.contact import may_contact
from synapse_sferum.policy.creation import (
    CreateRoomRequest,
    may_create_alias,
    may_create_room,
    may_publish_room,
    room_may_federate,
)
from synapse_sferum.policy.decision import ALLOW, Decision, refuse
from synapse_sferum.policy.documents import may_post_file
from synapse_sferum.policy.events import (
    PLATFORM_STATE,
    ProvisionedRoom,
    may_redact_state,
    may_send_state,
)
from synapse_sferum.policy.membership import (
    may_change_membership,
    may_invite,
    may_join_room,
    may_receive_remote_invite,
)
from synapse_sferum.policy.names import (
    TEACHER_BADGE,
    asserted_role,
    display_name_for,
    expected_display_name,
)
from synapse_sferum.policy.photos import may_use_avatar, real_profile
from synapse_sferum.policy.provisioning import (
    ClassView,
    MembershipDiff,
    OrgView,
    PupilView,
    RoomPlan,
    RunState,
    call_widget,
    desired_rooms,
    membership_changes,
    power_levels,
    provisioning_waves,
    run_state,
)

__all__ = [
    "ALLOW",
    "PLATFORM_STATE",
    "TEACHER_BADGE",
    "ClassView",
    "CreateRoomRequest",
    "Decision",
    "MembershipDiff",
    "OrgView",
    "ProvisionedRoom",
    "PupilView",
    "Reason",
    "RoomPlan",
    "RunState",
    "asserted_role",
    "call_widget",
    "desired_rooms",
    "display_name_for",
    "expected_display_name",
    "may_change_membership",
    "may_contact",
    "may_create_alias",
    "may_create_room",
    "may_invite",
    "may_join_room",
    "may_post_file",
    "may_publish_room",
    "may_receive_remote_invite",
    "may_redact_state",
    "may_send_state",
    "may_use_avatar",
    "membership_changes",
    "power_levels",
    "provisioning_waves",
    "real_profile",
    "refuse",
    "room_may_federate",
    "run_state",
]
