"""`sferumctl rooms upgrade`: the platform upgrades one of its rooms (docs/rooms-and-rules.md,
«Year end»). The module does it as its bot (`synapse_sferum/upgrades.py`); this asks and says
what became of the room."""

from __future__ import annotations

from sferum_shared.adminapi import parse_upgraded_room
from synapse_sferum.ctl.adminapi import call, parsed
from synapse_sferum.ctl.deployment import Deployment


def upgrade_room(deployment: Deployment, room: str, version: str | None) -> list[str]:
    """Upgrades `room` (ID or alias); the lines to print. The server's refusals (an unknown
    room, one the platform did not make, a version it does not know) are `Rejected`."""
    upgraded = parsed(
        parse_upgraded_room, call(deployment, lambda api: api.upgrade_room(room, version))
    )
    return [
        f"{upgraded.kind} {upgraded.scope}: {upgraded.room_id} is now "
        f"{upgraded.replacement_room} (room version {upgraded.version})",
        "the old room keeps its history; the reconcile that follows puts the members, "
        "widgets and space links into the new one",
    ]
