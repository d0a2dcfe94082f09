"""Who may contact whom (docs/rooms-and-rules.md): the rule behind every DM, invite and directory
search."""

from __future__ import annotations

from sferum_shared.model import Member, Role
from sferum_shared.vocabulary import Reason
from synapse_sferum.policy.decision import ALLOW, Decision, refuse


def may_contact(sender: Member | None, target: Member | None) -> Decision:
    """May `sender` start a conversation with `target`? None is an account outside the directory.

    Every relation holds only inside a shared school: a family split across schools is listed in
    both by the roster (a OneRoster user has a list of orgs), so no exception is needed for it.
    A person with several roles reaches everyone that any one of the roles reaches.
    """
    if sender is None:
        return refuse(Reason.UNLINKED_SENDER)
    if target is None:
        return refuse(Reason.UNLINKED_TARGET)
    if sender.person_id == target.person_id:
        return ALLOW
    if sender.org_ids.isdisjoint(target.org_ids):
        return refuse(Reason.OTHER_SCHOOL)
    if _related(sender, target):
        return ALLOW
    return refuse(Reason.MINOR_PROTECTED if target.is_minor else Reason.NOT_RELATED)


def _related(sender: Member, target: Member) -> bool:
    """One school, and a relation from the sender's side (contact is not symmetric)."""
    return (
        sender.is_school_adult
        or (sender.has(Role.STUDENT) and _student_reaches(sender, target))
        or (sender.has(Role.GUARDIAN) and _guardian_reaches(sender, target))
    )


def _student_reaches(student: Member, target: Member) -> bool:
    classes = student.student_class_ids
    return (
        target.has(Role.STAFF)
        or not classes.isdisjoint(target.student_class_ids)  # a classmate
        or not classes.isdisjoint(target.teacher_class_ids)  # one of the student's teachers
        or target.person_id in student.guardian_ids
    )


def _guardian_reaches(guardian: Member, target: Member) -> bool:
    classes = guardian.child_class_ids
    return (
        target.has(Role.STAFF)
        or target.person_id in guardian.child_ids
        or not classes.isdisjoint(target.teacher_class_ids)  # a teacher of the children
        or (target.has(Role.GUARDIAN) and not classes.isdisjoint(target.child_class_ids))
    )
