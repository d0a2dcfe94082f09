"""Who may see what in the diary mini-app (pure: the rules only, no I/O).

The widget's URL parameters are unauthenticated, so the page never decides anything: the bridge
learns the viewer's account from a Matrix OpenID token, asks the module's directory about that
account (and about the pupil whose diary is asked for), and applies these rules. The directory
is asked on every view instead of being copied into the bridge, so a guardian removed from the
roster loses access at the next roster import, not at the bridge's next restart.

Marks are the private part: the pupil, the pupil's guardians, teachers of a class the pupil
attends and the staff of the pupil's school. Homework, the timetable and the class news room's
articles belong to a class: its pupils, its teachers, the guardians of its pupils, and staff (the
news room's members, and the staff who write the school news).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

STUDENT, GUARDIAN, TEACHER, STAFF = "student", "guardian", "teacher", "staff"


def _ids(raw: Mapping[str, Any], key: str) -> frozenset[str]:
    value = raw.get(key) or []
    if not isinstance(value, list):
        return frozenset()
    return frozenset(v for v in value if isinstance(v, str))


@attrs.frozen
class Viewer:
    """The directory's view of one person (the module's `who` answer), viewer or pupil alike.

    `person_id` is None for an account the roster does not know (a plain Matrix account, the
    bot, a remote user): such a viewer sees nothing.
    """

    person_id: str | None
    roles: frozenset[str] = frozenset()
    org_ids: frozenset[str] = frozenset()
    student_class_ids: frozenset[str] = frozenset()
    teacher_class_ids: frozenset[str] = frozenset()
    child_ids: frozenset[str] = frozenset()
    child_class_ids: frozenset[str] = frozenset()
    user_id: str | None = None

    @classmethod
    def from_who(cls, raw: Mapping[str, Any]) -> Viewer:
        """From the admin API's `who` JSON; anything malformed counts as unknown."""
        person = raw.get("person")
        user_id = raw.get("user_id")
        return cls(
            person_id=person if isinstance(person, str) and person else None,
            roles=_ids(raw, "roles"),
            org_ids=_ids(raw, "org_ids"),
            student_class_ids=_ids(raw, "student_class_ids"),
            teacher_class_ids=_ids(raw, "teacher_class_ids"),
            child_ids=_ids(raw, "child_ids"),
            child_class_ids=_ids(raw, "child_class_ids"),
            user_id=user_id if isinstance(user_id, str) else None,
        )


def may_view_marks(viewer: Viewer, pupil_id: str, pupil: Viewer | None) -> bool:
    """Whether `viewer` may see the marks of `pupil_id`.

    `pupil` is the directory's view of the pupil (by person, since a pupil needs no account
    for the diary to exist): it says which classes the pupil attends and at which school. The
    snapshot's marks also carry class IDs, but they are not used: a class listed on a mark is
    what the diary system says, while the roster in the module is what the school says, and
    only the latter decides who teaches whom.
    """
    if viewer.person_id is None or not pupil_id:
        return False
    if viewer.person_id == pupil_id:
        return STUDENT in viewer.roles
    if GUARDIAN in viewer.roles and pupil_id in viewer.child_ids:
        return True
    if pupil is None or pupil.person_id != pupil_id or STUDENT not in pupil.roles:
        return False
    if TEACHER in viewer.roles and viewer.teacher_class_ids & pupil.student_class_ids:
        return True
    return STAFF in viewer.roles and bool(viewer.org_ids & pupil.org_ids)


def may_view_class(viewer: Viewer, class_id: str) -> bool:
    """Whether `viewer` may see a class's homework and timetable, or its news (the «Новости»
    view): what its class chat and its class news room show."""
    if viewer.person_id is None or not class_id:
        return False
    if STAFF in viewer.roles:
        return True
    return (
        (STUDENT in viewer.roles and class_id in viewer.student_class_ids)
        or (TEACHER in viewer.roles and class_id in viewer.teacher_class_ids)
        or (GUARDIAN in viewer.roles and class_id in viewer.child_class_ids)
    )
