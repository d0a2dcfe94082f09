"""Builds the provisioning planner's per-school views from a directory snapshot (pure).

On `today`, by the roster's enrollment end dates (policy/year_end.py): people who have left are
in no view, an enrollment that is over counts only in an archived class.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date

from sferum_shared.model import ClassType, EnrollmentRole, Role
from synapse_sferum.policy import ClassView, OrgView, PupilView
from synapse_sferum.policy.year_end import enrollment_counts, year_end
from synapse_sferum.roster.merge import DirectorySnapshot


def org_views(
    snapshot: DirectorySnapshot, pairs: Iterable[tuple[str, str]], today: date
) -> list[OrgView]:
    """One view per school (an org that has classes or people), enabled people only."""
    state = year_end(snapshot.enrollments.values(), today)
    enabled = {pid for pid, p in snapshot.people.items() if p.enabled and pid not in state.left}
    guardians_of: dict[str, set[str]] = defaultdict(set)
    for guardian, student in pairs:
        if guardian in enabled:
            guardians_of[student].add(guardian)

    students: dict[str, set[str]] = defaultdict(set)
    teachers: dict[str, set[str]] = defaultdict(set)
    class_teachers: dict[str, set[str]] = defaultdict(set)
    for e in snapshot.enrollments.values():
        if e.person_id not in enabled or not enrollment_counts(e, state, today):
            continue
        if e.role is EnrollmentRole.STUDENT:
            students[e.class_id].add(e.person_id)
        else:
            teachers[e.class_id].add(e.person_id)
            if e.primary:
                class_teachers[e.class_id].add(e.person_id)

    classes_by_org: dict[str, list[ClassView]] = defaultdict(list)
    for cls in sorted(snapshot.classes.values(), key=lambda c: c.sourced_id):
        classes_by_org[cls.org_id].append(
            ClassView(
                class_id=cls.sourced_id,
                title=cls.title,
                is_homeroom=cls.class_type is ClassType.HOMEROOM,
                student_ids=frozenset(students[cls.sourced_id]),
                teacher_ids=frozenset(teachers[cls.sourced_id]),
                class_teacher_ids=frozenset(class_teachers[cls.sourced_id]),
                archived=cls.sourced_id in state.archived,
            )
        )

    people_by_org: dict[str, dict[Role, set[str]]] = defaultdict(lambda: defaultdict(set))
    for pid in sorted(enabled):
        person = snapshot.people[pid]
        for org_id in person.org_ids:
            for role in person.roles:
                people_by_org[org_id][role].add(pid)

    def diary_name(pid: str) -> str:
        person = snapshot.people[pid]
        return f"{person.given_name} {person.family_name}"

    views = []
    for org_id in sorted(set(classes_by_org) | set(people_by_org)):
        org = snapshot.orgs.get(org_id)
        if org is None or (org.type == "district" and org_id not in classes_by_org):
            continue
        by_role = people_by_org[org_id]
        views.append(
            OrgView(
                org_id=org_id,
                name=org.name,
                teacher_ids=frozenset(by_role[Role.TEACHER]),
                staff_ids=frozenset(by_role[Role.STAFF]),
                classes=tuple(classes_by_org[org_id]),
                pupils=tuple(
                    PupilView(
                        person_id=pid,
                        name=diary_name(pid),
                        guardian_ids=frozenset(guardians_of[pid]),
                    )
                    for pid in sorted(by_role[Role.STUDENT])
                ),
            )
        )
    return views
