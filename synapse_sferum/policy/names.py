"""Real names and the teacher's badge (docs/identity.md): the names the server sets and locks.

The badge lives only in server-set names and in server-asserted `unsigned` data, never in a
user-writable profile field. A roster name cannot smuggle one in either: the cap and the
characters that glue emoji together are removed before the badge is added for teachers.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection

from sferum_shared.model import Member, Role

TEACHER_BADGE = "🎓"
# U+1F393 graduation cap, with the variation selectors and the zero-width joiner that would
# build it into lookalike sequences such as 👨‍🎓.
_BADGE_PARTS = re.compile("[\U0001f393\ufe0e\ufe0f\u200d]")
# The order in which a person with several roles is named in `unsigned`.
_ROLE_ORDER = (Role.TEACHER, Role.STAFF, Role.GUARDIAN, Role.STUDENT)


def display_name_for(real_name: str, roles: Collection[Role]) -> str:
    """The real name, cleaned of any cap, plus the badge for teachers."""
    cleaned = _BADGE_PARTS.sub("", unicodedata.normalize("NFC", real_name))
    base = " ".join(cleaned.split())
    return f"{base} {TEACHER_BADGE}" if Role.TEACHER in roles else base


def wears_badge(text: object) -> bool:
    """Whether a name a user writes (a room's) shows the teacher's cap, alone or inside a
    lookalike such as 👨‍🎓: the badge is the server's to give, and a room named
    «Петров А. Н. 🎓» would borrow it. Other emoji (❤️, 👨‍👩‍👧) are left alone."""
    return isinstance(text, str) and TEACHER_BADGE in unicodedata.normalize("NFC", text)


def expected_display_name(member: Member) -> str:
    """The one display name a member may carry, in every room and profile."""
    return display_name_for(member.real_name, member.roles)


def asserted_role(member: Member) -> str:
    """The role the server asserts for a sender (teachers first: the badge must agree)."""
    return next(role.value for role in _ROLE_ORDER if role in member.roles)
