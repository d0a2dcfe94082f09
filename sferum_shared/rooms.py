"""Room kinds and the alias scheme (docs/rooms-and-rules.md), shared by every part."""

from __future__ import annotations

import enum
import hashlib
import re

import attrs


class RoomKind(enum.Enum):
    SCHOOL_SPACE = "school"
    CLASS_SPACE = "space"
    SCHOOL_NEWS = "news-school"
    CLASS_NEWS = "news"
    STAFF = "staff"
    CLASS_CHAT = "class"
    PARENTS = "parents"
    MEETING = "meeting"
    DIARY = "diary"
    LESSON = "lesson"
    BROADCAST = "broadcast"
    DOCUMENTS = "docs"  # an adult's own «Мои документы»

    @property
    def scope(self) -> Scope:
        return _SCOPES[self]

    @property
    def alias_prefix(self) -> str:
        # School news shares the "news" prefix with class news; the slug tells them apart.
        return "news" if self is RoomKind.SCHOOL_NEWS else self.value

    @property
    def is_space(self) -> bool:
        return self in (RoomKind.SCHOOL_SPACE, RoomKind.CLASS_SPACE)

    @property
    def federates(self) -> bool:
        """Only the staff room crosses to other (whitelisted) school servers."""
        return self is RoomKind.STAFF

    @property
    def published_alias(self) -> bool:
        """Whether the room's alias is in Synapse's directory, where every account can look it
        up. Not for rooms of one person: `#diary-<pupil>` would tell anyone which pupils exist
        and which families have signed up. The platform finds those rooms in its own table."""
        return self.scope is not Scope.PERSON


class Scope(enum.Enum):
    """What one room of a kind belongs to."""

    ORG = "org"
    CLASS = "class"
    PERSON = "person"


_SCOPES = {
    RoomKind.SCHOOL_SPACE: Scope.ORG,
    RoomKind.SCHOOL_NEWS: Scope.ORG,
    RoomKind.STAFF: Scope.ORG,
    RoomKind.BROADCAST: Scope.ORG,
    RoomKind.CLASS_SPACE: Scope.CLASS,
    RoomKind.CLASS_NEWS: Scope.CLASS,
    RoomKind.CLASS_CHAT: Scope.CLASS,
    RoomKind.PARENTS: Scope.CLASS,
    RoomKind.MEETING: Scope.CLASS,
    RoomKind.LESSON: Scope.CLASS,
    RoomKind.DIARY: Scope.PERSON,
    RoomKind.DOCUMENTS: Scope.PERSON,
}

ORG_KINDS = tuple(k for k in RoomKind if k.scope is Scope.ORG)
CLASS_KINDS = tuple(k for k in RoomKind if k.scope is Scope.CLASS)

_SLUG_UNSAFE = re.compile(r"[^a-z0-9._=-]+")


def slug(sourced_id: str) -> str:
    """An alias-safe form of a sourcedId: lower-case ASCII, plus a short hash if anything was lost.

    Two different sourcedIds never share a slug: lossy ones carry a hash of the original.
    """
    lowered = sourced_id.lower()
    safe = _SLUG_UNSAFE.sub("-", lowered).strip("-") or "x"
    if safe == lowered and safe == sourced_id:
        return safe
    digest = hashlib.sha256(sourced_id.encode()).hexdigest()[:8]
    return f"{safe[:40]}-{digest}"


@attrs.frozen
class RoomKey:
    """Which provisioned room: its kind and the sourcedId of what it belongs to."""

    kind: RoomKind
    scope_id: str  # org, class or person sourcedId, by kind.scope

    def alias_localpart(self) -> str:
        if self.kind is RoomKind.SCHOOL_NEWS:
            return f"news-school-{slug(self.scope_id)}"
        return f"{self.kind.alias_prefix}-{slug(self.scope_id)}"

    def alias(self, server_name: str) -> str:
        return f"#{self.alias_localpart()}:{server_name}"


RESERVED_ALIAS_PREFIXES = tuple(sorted({f"{k.alias_prefix}-" for k in RoomKind}))


def is_reserved_alias(localpart: str) -> bool:
    """Aliases of the platform's scheme: nobody but the platform may take them."""
    return localpart.startswith(RESERVED_ALIAS_PREFIXES)

