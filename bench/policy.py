#!/usr/bin/env python3
"""Measures what one rule decision costs at district scale (target: p99 ≤ 50 µs at 100k people).

A district is generated with tests/district.py (default 40 schools × 1,000 pupils ≈ 100,000
people with guardians, teachers and staff), parsed and merged by the real roster code, and every
person is turned into the rules' `Member` the way the store does it (`build_member`). Then, over
random pairs (by default 200,000 of people in the same school, where the rules look deepest,
and 200,000 of anyone with anyone), each call is timed on its own with `time.perf_counter_ns`:

* `may_contact`, and `may_invite` for a DM (the rule behind a /createRoom with one invitee);
* a cached lookup plus decision: both Members from a dict, then `may_contact`;
* the module's real callback on a cache hit: `Gatekeeper.check_username_for_spam` (user
  directory search) with Synapse's `@cached` member cache prefilled, driven without a reactor.

The baseline, measured the same way and interleaved with the others, is a trivial call with the
same arguments (`lambda a, b: True`), so timer and loop overhead show up in it too. Per-call
figures include that overhead (≈ the baseline); a batched mean (many calls per timer read) is
printed as well. Decision and baseline run in alternating chunks so that noise hits both alike.

    .venv/bin/python bench/policy.py [--schools 40] [--pupils 1000] [--pairs 200000]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from datetime import time as time_of_day
from pathlib import Path
from typing import Any, cast
from unittest import mock

import attrs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sferum_shared import Clock  # noqa: E402
from sferum_shared.model import EnrollmentRole, Member  # noqa: E402
from synapse_sferum import policy  # noqa: E402
from synapse_sferum.directory import build_member, guardianship_pairs  # noqa: E402
from synapse_sferum.roster.merge import DirectorySnapshot, merge  # noqa: E402
from synapse_sferum.roster.oneroster import parse_roster  # noqa: E402
from tests.district import DISTRICT_DAY, generate_district  # noqa: E402

SERVER = "bench.test"
TODAY = DISTRICT_DAY
ADULT_AGE = 18
CHUNKS = 20  # contenders alternate chunk by chunk
BATCH = 1000  # calls per timer read for the batched mean

Pair = tuple[Any, Any]


def build_members(snapshot: DirectorySnapshot) -> dict[str, Member]:
    """Every enabled person's Member, derived from the records as the store derives it."""
    student_classes: dict[str, set[str]] = {}
    teacher_classes: dict[str, set[str]] = {}
    for enrollment in snapshot.enrollments.values():
        into = student_classes if enrollment.role is EnrollmentRole.STUDENT else teacher_classes
        into.setdefault(enrollment.person_id, set()).add(enrollment.class_id)
    children: dict[str, set[str]] = {}
    guardians: dict[str, set[str]] = {}
    for guardian, student in guardianship_pairs(snapshot.people):
        children.setdefault(guardian, set()).add(student)
        guardians.setdefault(student, set()).add(guardian)
    members: dict[str, Member] = {}
    for person_id, person in snapshot.people.items():
        if not person.enabled:
            continue
        demographics = snapshot.demographics.get(person_id)
        kids = children.get(person_id, set())
        members[person_id] = build_member(
            person,
            birth_date=demographics.birth_date if demographics else None,
            student_class_ids=student_classes.get(person_id, ()),
            teacher_class_ids=teacher_classes.get(person_id, ()),
            child_ids=kids,
            child_class_ids={c for kid in kids for c in student_classes.get(kid, ())},
            guardian_ids=guardians.get(person_id, ()),
            today=TODAY,
            adult_age=ADULT_AGE,
        )
    return members


def sample_pairs(
    members: Sequence[Member], count: int, same_school: bool, rng: random.Random
) -> list[tuple[Member, Member]]:
    """`count` (sender, target) pairs; with `same_school`, the target shares a school."""
    by_school: dict[str, list[Member]] = {}
    for member in members:
        for org in member.org_ids:
            by_school.setdefault(org, []).append(member)
    pairs = []
    for _ in range(count):
        sender = rng.choice(members)
        if same_school:
            target = rng.choice(by_school[rng.choice(sorted(sender.org_ids))])
        else:
            target = rng.choice(members)
        pairs.append((sender, target))
    return pairs


@attrs.frozen
class Contender:
    name: str
    call: Callable[[Any, Any], object]
    pairs: Sequence[Pair]


@attrs.define
class Timings:
    per_call: list[int] = attrs.field(factory=list)  # ns, one timer pair per call
    batched: list[float] = attrs.field(factory=list)  # ns per call, one timer pair per BATCH

    def percentile(self, q: float) -> float:
        ordered = sorted(self.per_call)
        return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])

    @property
    def mean(self) -> float:
        return statistics.fmean(self.per_call)

    @property
    def batched_mean(self) -> float:
        return statistics.fmean(self.batched) if self.batched else float("nan")


def _time_each(call: Callable[[Any, Any], object], pairs: Sequence[Pair], out: list[int]) -> None:
    clock = time.perf_counter_ns
    append = out.append
    for a, b in pairs:
        start = clock()
        call(a, b)
        append(clock() - start)


def _time_batches(
    call: Callable[[Any, Any], object], pairs: Sequence[Pair], out: list[float]
) -> None:
    clock = time.perf_counter_ns
    for at in range(0, len(pairs) - BATCH + 1, BATCH):
        batch = pairs[at : at + BATCH]
        start = clock()
        for a, b in batch:
            call(a, b)
        out.append((clock() - start) / BATCH)


def measure(contenders: Sequence[Contender]) -> dict[str, Timings]:
    """Each contender's timings, chunk by chunk in turn, so slow phases of a noisy machine
    hit them all alike."""
    results = {c.name: Timings() for c in contenders}
    for contender in contenders:  # warm up
        _time_each(contender.call, contender.pairs[:BATCH], [])
    for chunk in range(CHUNKS):
        for contender in contenders:
            size = len(contender.pairs) // CHUNKS
            part = contender.pairs[chunk * size : (chunk + 1) * size]
            _time_each(contender.call, part, results[contender.name].per_call)
            _time_batches(contender.call, part, results[contender.name].batched)
    return results


def _run_sync(awaitable: Awaitable[Any]) -> Any:
    """Runs a coroutine that never waits (every Deferred it awaits has fired) to its end."""
    coroutine = cast(Coroutine[Any, Any, Any], awaitable)
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the callback waited for something: a cache miss?")


@attrs.frozen
class ModuleCallback:
    """The module's `check_username_for_spam` over Synapse's `@cached` member cache."""

    check: Callable[[str, str], object]
    prefill: Callable[[str, Member], None]
    capacity: int  # the cache's max_entries × Synapse's cache factor


def module_callback() -> ModuleCallback | None:
    """None if this version of the module has no prefillable member cache."""
    from synapse.module_api import ModuleApi, UserProfile

    from synapse_sferum.access import Gatekeeper
    from synapse_sferum.config import parse_config
    from synapse_sferum.service import DirectoryService

    api = mock.Mock(spec=ModuleApi)
    api.server_name = SERVER
    api.get_qualified_user_id.side_effect = lambda localpart: f"@{localpart}:{SERVER}"
    api.is_mine.side_effect = lambda user_id: user_id.endswith(f":{SERVER}")
    config = parse_config({"admin_api_secret": "x" * 32, "provisioning": {"enabled": False}})
    noon = datetime.combine(TODAY, time_of_day(12), UTC)
    directory = DirectoryService(api, config, Clock.fixed(noon))
    gatekeeper = Gatekeeper(api, config, directory)
    names = ("_member", "get_member")  # the cached method's name has changed before
    cached = next((f for n in names if hasattr(f := getattr(directory, n, None), "prefill")), None)
    if cached is None:
        return None

    def check(requester: str, target: str) -> object:
        profile = UserProfile(user_id=target, display_name=None, avatar_url=None)
        return _run_sync(gatekeeper.check_username_for_spam(profile, requester))

    def prefill(user: str, member: Member) -> None:
        cached.prefill((user, TODAY.isoformat()), member)

    return ModuleCallback(check, prefill, int(cached.cache.cache.max_size))


def user_id(person_id: str) -> str:
    return f"@{person_id}:{SERVER}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schools", type=int, default=40)
    parser.add_argument("--pupils", type=int, default=1000, help="pupils per school")
    parser.add_argument("--pairs", type=int, default=200_000, help="pairs per scenario")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sferum-bench-") as tmp:
        generate_district(Path(tmp), args.schools, args.pupils, args.seed)
        snapshot = merge(DirectorySnapshot(), parse_roster(Path(tmp), TODAY))
    members = build_members(snapshot)
    del snapshot
    everyone = list(members.values())
    print(
        f"directory: {len(members):,} people in {args.schools} schools "
        f"(generated, parsed, merged and built in {time.perf_counter() - started:.1f} s)"
    )

    same = sample_pairs(everyone, args.pairs, same_school=True, rng=rng)
    anyone = sample_pairs(everyone, args.pairs, same_school=False, rng=rng)
    by_user = {user_id(m.person_id): m for m in everyone}
    same_ids = [(user_id(a.person_id), user_id(b.person_id)) for a, b in same]

    def cached_decision(sender: str, target: str) -> object:
        return policy.may_contact(by_user.get(sender), by_user.get(target))

    def invite_dm(inviter: Member, invitee: Member) -> object:
        return policy.may_invite(
            inviter,
            invitee,
            inviter_is_platform=False,
            invitee_is_remote=False,
            invitee_server_listed=False,
            room=None,
            room_is_direct=True,
            room_federates=False,
            room_member_count=1,
            invitee_already_member=False,
        )

    baseline = Contender("baseline: lambda a, b: True", lambda a, b: True, same)
    contenders = [
        baseline,
        Contender("may_contact, same school", policy.may_contact, same),
        Contender("may_contact, any school", policy.may_contact, anyone),
        Contender("may_invite (DM), same school", invite_dm, same),
        Contender("dict lookup ×2 + may_contact", cached_decision, same_ids),
    ]

    # The module's member cache holds only so many people: take whole schools up to 90% of it.
    callback = module_callback()
    hot: set[str] = set()
    if callback is not None:
        schools: dict[str, list[str]] = {}
        for member in everyone:
            for org in member.org_ids:
                schools.setdefault(org, []).append(member.person_id)
        for school in sorted(schools):
            if len(hot) + len(schools[school]) > callback.capacity * 0.9:
                break
            hot.update(schools[school])
        for person_id in hot:
            callback.prefill(user_id(person_id), members[person_id])
        hot_pairs = [
            (user_id(a.person_id), user_id(b.person_id))
            for a, b in same
            if a.person_id in hot and b.person_id in hot
        ]
        contenders.append(
            Contender("module callback, Synapse @cached hit", callback.check, hot_pairs)
        )

    gc.collect()
    gc.freeze()  # as Synapse does once started: the directory is long-lived
    results = measure(contenders)

    print(f"{len(same):,} same-school and {len(anyone):,} any-school pairs, each call timed")
    print(f"{'':40} {'p50 ns':>9} {'p99 ns':>9} {'mean ns':>9} {'batched':>9} {'×base':>7}")
    base_mean = results[baseline.name].batched_mean
    for contender in contenders:
        t = results[contender.name]
        print(
            f"{contender.name:40} {t.percentile(0.5):9.0f} {t.percentile(0.99):9.0f} "
            f"{t.mean:9.0f} {t.batched_mean:9.0f} {t.batched_mean / base_mean:7.1f}"
        )
    if callback is not None:
        print(
            f"module member cache: {callback.capacity:,} entries (max_entries × Synapse's "
            f"cache factor) for {len(members):,} people; the callback ran on {len(hot):,} "
            "cached people (whole schools)"
        )
    else:
        print("module callback: skipped (no prefillable member cache in this module version)")

    rules = [c.name for c in contenders[1:4]]
    worst = max(rules, key=lambda name: results[name].percentile(0.99))
    p99 = results[worst].percentile(0.99) / 1000
    base = results[baseline.name]
    ratio = results[rules[0]].batched_mean / base.batched_mean
    verdict = "OK" if p99 <= 50 else "OVER TARGET"
    if callback is not None:
        cb = results[contenders[-1].name].percentile(0.99) / 1000
        print(f"module callback p99 = {cb:.2f} µs (the whole cache-hit path Synapse waits on)")
    print(
        f"p99 = {p99:.2f} µs (target ≤ 50 µs) [{worst}] {verdict}; "
        f"may_contact/baseline ratio = {ratio:.1f} (batched means)"
    )


if __name__ == "__main__":
    main()
