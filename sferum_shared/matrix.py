"""The Matrix spec names the platform refers to, spelled once (ours are in `vocabulary`)."""

from __future__ import annotations

# State event types
CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
GUEST_ACCESS = "m.room.guest_access"
HISTORY_VISIBILITY = "m.room.history_visibility"
ENCRYPTION = "m.room.encryption"
SERVER_ACL = "m.room.server_acl"
TOMBSTONE = "m.room.tombstone"
NAME = "m.room.name"
TOPIC = "m.room.topic"
CANONICAL_ALIAS = "m.room.canonical_alias"
AVATAR = "m.room.avatar"
PINNED_EVENTS = "m.room.pinned_events"
SPACE_CHILD = "m.space.child"
SPACE_PARENT = "m.space.parent"
WIDGETS = "im.vector.modular.widgets"
# MatrixRTC's call membership (MSC3401, as Element Call and Element X send it today): one state
# event per device in the call, its state key naming the owner (`_@user:server_DEVICE`).
CALL_MEMBER = "org.matrix.msc3401.call.member"

# Image packs (MSC2545, in the spec since v1.19): a pack is room state, and account data says
# which rooms' packs a user's clients offer. Clients read the unstable names today (FluffyChat,
# Cinny, Nheko), so the platform writes both.
IMAGE_PACK = "m.room.image_pack"
IMAGE_PACK_ROOMS = "m.image_pack.rooms"
PONIES_ROOM_EMOTES = "im.ponies.room_emotes"
PONIES_EMOTE_ROOMS = "im.ponies.emote_rooms"

# A message's HTML (`format` beside `formatted_body`): the one format the spec defines.
HTML_FORMAT = "org.matrix.custom.html"

# Message-like event types
MESSAGE = "m.room.message"
ENCRYPTED = "m.room.encrypted"
STICKER = "m.sticker"
REACTION = "m.reaction"
REDACTION = "m.room.redaction"
# Polls (MSC3381). Every client sends the unstable names: the stable `m.poll.*` are only for
# room versions with extensible events, and there are none yet.
POLL_START = "org.matrix.msc3381.poll.start"
POLL_RESPONSE = "org.matrix.msc3381.poll.response"
POLL_END = "org.matrix.msc3381.poll.end"
POLL_DISCLOSED = "org.matrix.msc3381.poll.disclosed"
TEXT = "org.matrix.msc1767.text"  # extensible events' fallback text, inside a poll's parts

# Values that open a room to people nobody invited (docs/rooms-and-rules.md «Closed»). The one join
# rule a user's room may have is `invite`: `public`, `knock`, `restricted` and `knock_restricted`
# (and any rule a later room version adds) let others in, or ask, without anyone inviting them.
INVITE_JOIN_RULE = "invite"
PUBLIC_JOIN_RULE = "public"
GUEST_CAN_JOIN = "can_join"
WORLD_READABLE = "world_readable"
PUBLIC_VISIBILITY = "public"
PUBLIC_PRESET = "public_chat"

# Memberships
JOIN = "join"
LEAVE = "leave"
INVITE = "invite"
KNOCK = "knock"
