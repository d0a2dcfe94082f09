"""Pure derivations over directory records: guardianships and what the rules know of a person."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from sferum_shared.ids import PersonId
from sferum_shared.model import Member, Person, Role


def guardianship_pairs(people: Mapping[str, Person]) -> set[tuple[str, str]]:
    """(guardian, student) pairs; either side's agentSourcedIds may name the other."""
    pairs: set[tuple[str, str]] = set()
    for person in people.values():
        for agent_id in person.agent_ids:
            agent = people.get(agent_id)
            if agent is None:
                continue
            if Role.GUARDIAN in person.roles and Role.STUDENT in agent.roles:
                pairs.add((person.sourced_id, agent_id))
            if Role.STUDENT in person.roles and Role.GUARDIAN in agent.roles:
                pairs.add((agent_id, person.sourced_id))
    return pairs


def age_on(birth_date: date, today: date) -> int:
    years = today.year - birth_date.year
    return years - ((today.month, today.day) < (birth_date.month, birth_date.day))


def is_minor(birth_date: date | None, roles: Iterable[Role], today: date, adult_age: int) -> bool:
    """Pupils without a birth date count as minors: protection is the safe default."""
    if birth_date is None:
        return Role.STUDENT in set(roles)
    return age_on(birth_date, today) < adult_age


def build_member(
    person: Person,
    *,
    birth_date: date | None,
    student_class_ids: Iterable[str],
    teacher_class_ids: Iterable[str],
    child_ids: Iterable[str],
    child_class_ids: Iterable[str],
    guardian_ids: Iterable[str],
    today: date,
    adult_age: int,
) -> Member:
    return Member(
        person_id=PersonId(person.sourced_id),
        roles=person.roles,
        org_ids=frozenset(person.org_ids),
        real_name=person.real_name,
        student_class_ids=frozenset(student_class_ids),
        teacher_class_ids=frozenset(teacher_class_ids),
        child_ids=frozenset(map(PersonId, child_ids)),
        child_class_ids=frozenset(child_class_ids),
        guardian_ids=frozenset(map(PersonId, guardian_ids)),
        is_minor=is_minor(birth_date, person.roles, today, adult_age),
    )
