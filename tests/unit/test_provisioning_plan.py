"""Planning provisioned rooms (docs/rooms-and-rules.md): members per kind exactly, power levels,
diffs, and the privacy property that no room shows a child to families outside the child's classes.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sferum_shared.rooms import RoomKey, RoomKind, Scope
from synapse_sferum.policy import (
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
from synapse_sferum.policy.call_widget import widget_state


def _ids(*names: str) -> frozenset[str]:
    return frozenset(names)


def _user(person_id: str) -> str:
    return f"@{person_id}:school.example"


def _users(*person_ids: str) -> frozenset[str]:
    return frozenset(map(_user, person_ids))


# Two homerooms and a subject group. Tamara (t_c) teaches algebra and is Vera's (p3) mother;
# Vera is not linked, nor is Grisha (p4) or his father (g4).
SCHOOL = OrgView(
    org_id="school-1",
    name="Школа №1",
    teacher_ids=_ids("t_a", "t_b", "t_c"),
    staff_ids=_ids("s1"),
    classes=(
        ClassView("5a", "5А", True, _ids("p1", "p2"), _ids("t_a", "t_b"), _ids("t_a")),
        ClassView("6b", "6Б", True, _ids("p3", "p4"), _ids("t_b"), _ids("t_b")),
        ClassView("5a-alg", "5А Алгебра", False, _ids("p1"), _ids("t_c")),
    ),
    pupils=(
        PupilView("p1", "Аня Иванова", _ids("g1")),
        PupilView("p2", "Борис Петров", _ids("g2")),
        PupilView("p3", "Вера Петрова", _ids("g2", "t_c")),
        PupilView("p4", "Гриша Сидоров", _ids("g4")),
    ),
)
UNLINKED = {"p3", "p4", "g4"}
LINKED = {
    pid: _user(pid)
    for pid in ("p1", "p2", "p3", "p4", "g1", "g2", "g4", "t_a", "t_b", "t_c", "s1")
    if pid not in UNLINKED
}
PLANS = {plan.key: plan for plan in desired_rooms(SCHOOL, LINKED)}

K = RoomKind
SPACE_1 = RoomKey(K.SCHOOL_SPACE, "school-1")
SPACE_5A, SPACE_6B = RoomKey(K.CLASS_SPACE, "5a"), RoomKey(K.CLASS_SPACE, "6b")
ADULTS = ("t_a", "t_b", "t_c", "s1")

# (kind, scope, members, moderators, events_default, parent space)
MEMBERSHIP_TABLE = [
    (K.SCHOOL_SPACE, "school-1", ADULTS, ("s1",), 50, None),
    (K.SCHOOL_NEWS, "school-1", ADULTS, ("s1",), 0, SPACE_1),
    (K.STAFF, "school-1", ADULTS, ("s1",), 0, SPACE_1),
    (K.BROADCAST, "school-1", ADULTS, ("s1",), 50, SPACE_1),
    (K.CLASS_SPACE, "5a", ("p1", "p2", "g1", "g2", "t_a", "t_b"), ("t_a", "t_b"), 100, SPACE_1),
    (K.CLASS_NEWS, "5a", ("p1", "p2", "g1", "g2", "t_a", "t_b"), ("t_a", "t_b"), 50, SPACE_5A),
    (K.CLASS_CHAT, "5a", ("p1", "p2", "t_a", "t_b"), ("t_a", "t_b"), 0, SPACE_5A),
    (K.PARENTS, "5a", ("g1", "g2"), (), 0, SPACE_5A),
    (K.MEETING, "5a", ("g1", "g2", "t_a", "s1"), ("t_a",), 0, SPACE_5A),
    (K.LESSON, "5a", ("p1", "p2", "t_a", "t_b"), ("t_a", "t_b"), 0, SPACE_5A),
    (K.CLASS_SPACE, "6b", ("g2", "t_c", "t_b"), ("t_b",), 100, SPACE_1),
    (K.CLASS_NEWS, "6b", ("g2", "t_c", "t_b"), ("t_b",), 50, SPACE_6B),
    (K.CLASS_CHAT, "6b", ("t_b",), ("t_b",), 0, SPACE_6B),
    (K.PARENTS, "6b", ("g2", "t_c"), (), 0, SPACE_6B),  # Tamara, as Vera's mother
    (K.MEETING, "6b", ("g2", "t_c", "t_b", "s1"), ("t_b",), 0, SPACE_6B),
    (K.LESSON, "6b", ("t_b",), ("t_b",), 0, SPACE_6B),
    (K.CLASS_CHAT, "5a-alg", ("p1", "t_c"), ("t_c",), 0, SPACE_1),
    (K.LESSON, "5a-alg", ("p1", "t_c"), ("t_c",), 0, SPACE_1),
    (K.DIARY, "p1", ("p1", "g1"), (), 0, None),
    (K.DIARY, "p2", ("p2", "g2"), (), 0, None),
    (K.DIARY, "p3", ("g2", "t_c"), (), 0, None),  # Vera is not linked; her parents are
    # Every linked adult's own documents; g4 has no account yet, so no room.
    *((K.DOCUMENTS, adult, (adult,), (), 0, None) for adult in ("g1", "g2", *ADULTS)),
]


@pytest.mark.parametrize(
    ("kind", "scope_id", "members", "moderators", "posters", "parent"),
    [pytest.param(*row, id=f"{row[0].value}-{row[1]}") for row in MEMBERSHIP_TABLE],
)
def test_members_per_kind(
    kind: RoomKind,
    scope_id: str,
    members: tuple[str, ...],
    moderators: tuple[str, ...],
    posters: int,
    parent: RoomKey | None,
) -> None:
    plan = PLANS[RoomKey(kind, scope_id)]
    assert plan.members == _users(*members)
    assert plan.moderators == _users(*moderators)
    assert plan.posters_level == posters
    assert plan.parent == parent


def test_exactly_the_tabled_rooms_are_planned() -> None:
    """Subject groups get a chat and a lesson only; a diary nobody linked would read is skipped."""
    assert set(PLANS) == {RoomKey(kind, scope_id) for kind, scope_id, *_ in MEMBERSHIP_TABLE}


NAMES = {
    SPACE_1: "Школа №1",
    RoomKey(K.SCHOOL_NEWS, "school-1"): "Новости школы",
    RoomKey(K.STAFF, "school-1"): "Учительская",
    RoomKey(K.BROADCAST, "school-1"): "Трансляции",
    SPACE_5A: "5А",
    RoomKey(K.CLASS_NEWS, "5a"): "5А — новости",
    RoomKey(K.CLASS_CHAT, "5a"): "5А — чат класса",
    RoomKey(K.PARENTS, "5a"): "5А — родители",
    RoomKey(K.MEETING, "5a"): "5А — родительское собрание",
    RoomKey(K.LESSON, "5a"): "5А — урок",
    RoomKey(K.LESSON, "5a-alg"): "5А Алгебра — урок",
    RoomKey(K.DIARY, "p1"): "Дневник: Аня Иванова",
}


@pytest.mark.parametrize(
    ("key", "name"), [pytest.param(*item, id=item[0].alias_localpart()) for item in NAMES.items()]
)
def test_room_names(key: RoomKey, name: str) -> None:
    assert PLANS[key].name == name
    assert PLANS[key].topic


def test_only_the_staff_room_federates_and_only_spaces_are_spaces() -> None:
    assert {key for key, plan in PLANS.items() if plan.federate} == {RoomKey(K.STAFF, "school-1")}
    assert {key for key, plan in PLANS.items() if plan.is_space} == {SPACE_1, SPACE_5A, SPACE_6B}


def test_a_space_is_planned_before_its_rooms() -> None:
    order = [plan.key for plan in desired_rooms(SCHOOL, LINKED)]
    for position, key in enumerate(order):
        parent = PLANS[key].parent
        assert parent is None or order.index(parent) < position


# -- the call widget -----------------------------------------------------------------------------

BROADCAST = RoomKey(K.BROADCAST, "school-1")
# room → the room whose call its widget joins; no other room has a call widget
CALLS = {
    RoomKey(K.LESSON, "5a"): RoomKey(K.LESSON, "5a"),
    RoomKey(K.LESSON, "6b"): RoomKey(K.LESSON, "6b"),
    RoomKey(K.LESSON, "5a-alg"): RoomKey(K.LESSON, "5a-alg"),  # a subject group's lessons
    BROADCAST: BROADCAST,
    # families watch the school's broadcast in their class news, never joining its room
    RoomKey(K.CLASS_NEWS, "5a"): BROADCAST,
    RoomKey(K.CLASS_NEWS, "6b"): BROADCAST,
}


def test_lessons_the_broadcast_and_class_news_show_a_call() -> None:
    assert {key: plan.call for key, plan in PLANS.items() if plan.call is not None} == CALLS


SFU = "https://sfu.school.example"


@pytest.mark.parametrize(
    ("key", "call_room_id", "public_url", "expected"),
    [
        pytest.param(
            RoomKey(K.LESSON, "5a"), "!l:s", SFU, widget_state(K.LESSON, "!l:s", SFU), id="lesson"
        ),
        pytest.param(
            RoomKey(K.CLASS_NEWS, "5a"),
            "!b:s",
            SFU,
            widget_state(K.CLASS_NEWS, "!b:s", SFU),
            id="news-shows-the-broadcast",
        ),
        pytest.param(BROADCAST, "!b:s", None, {}, id="no-sfu-no-widget"),
        pytest.param(RoomKey(K.CLASS_CHAT, "5a"), "!c:s", SFU, {}, id="no-call-in-a-chat"),
    ],
)
def test_call_widget_content(
    key: RoomKey, call_room_id: str, public_url: str | None, expected: dict[str, object]
) -> None:
    assert call_widget(PLANS[key], call_room_id, public_url) == expected


# -- power levels ---------------------------------------------------------------------------------

BOT = "@sferum:school.example"
CLASS_NEWS = PLANS[RoomKey(K.CLASS_NEWS, "6b")]


def test_power_levels_of_a_new_room() -> None:
    assert power_levels(CLASS_NEWS, BOT, None) == {
        "users": {_user("t_b"): 50, BOT: 100},
        "users_default": 0,
        "events_default": 50,
        "state_default": 100,
        "invite": 100,
        "kick": 100,
        "ban": 100,
        "redact": 50,
        "events": {
            "m.room.name": 100,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 100,
            "m.room.avatar": 100,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
            "ru.sferum.room": 100,
            "im.vector.modular.widgets": 100,
            "m.room.pinned_events": 50,
            "m.reaction": 0,
            "m.room.redaction": 0,
            # Teachers start and end polls; families read the news and vote.
            "org.matrix.msc3381.poll.start": 50,
            "org.matrix.msc3381.poll.end": 50,
            "org.matrix.msc3381.poll.response": 0,
        },
        "notifications": {"room": 50},
    }


def test_power_levels_keep_unknown_keys_and_rewrite_known_ones_whole() -> None:
    current = {
        "users": {"@intruder:school.example": 100, BOT: 100},
        "events": {"m.room.topic": 0},
        "events_default": 0,
        "notifications": {"room": 0, "org.example.future": 10},
        "org.example.future_field": {"kept": True},
    }
    levels = power_levels(CLASS_NEWS, BOT, current)
    assert levels["org.example.future_field"] == {"kept": True}
    assert levels["users"] == {_user("t_b"): 50, BOT: 100}
    assert levels["events"] == power_levels(CLASS_NEWS, BOT, None)["events"]
    assert levels["notifications"] == {"room": 50}
    assert levels["events_default"] == 50
    assert power_levels(CLASS_NEWS, BOT, levels) == levels


def test_only_the_staff_room_lets_members_invite_partners() -> None:
    invite_levels = {key: power_levels(plan, BOT, None)["invite"] for key, plan in PLANS.items()}
    assert {key for key, level in invite_levels.items() if level == 0} == {
        RoomKey(K.STAFF, "school-1")
    }


# -- membership diffs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "joined", "invited", "expected"),
    [
        pytest.param(
            "ab", "", "", MembershipDiff(_ids("a", "b"), _ids("a", "b"), _ids()), id="new"
        ),
        pytest.param("a", "", "a", MembershipDiff(_ids(), _ids("a"), _ids()), id="invited-joins"),
        pytest.param("a", "a", "", MembershipDiff(_ids(), _ids(), _ids()), id="settled"),
        pytest.param("", "a", "b", MembershipDiff(_ids(), _ids(), _ids("a", "b")), id="removed"),
        pytest.param(
            "ab", "bc", "d", MembershipDiff(_ids("a"), _ids("a"), _ids("c", "d")), id="mixed"
        ),
        pytest.param("B", "", "", MembershipDiff(_ids(), _ids(), _ids()), id="bot-in-plan"),
    ],
)
def test_membership_changes(
    desired: str, joined: str, invited: str, expected: MembershipDiff
) -> None:
    """One letter per user; "B" is the bot, which is always joined and never removed."""
    changes = membership_changes(
        frozenset(desired), frozenset(joined) | {"B"}, frozenset(invited), "B"
    )
    assert changes == expected


def test_kept_members_are_not_removed() -> None:
    """Partner schools' staff in the staff room: not in the plan, yet never kicked by it."""
    changes = membership_changes(
        frozenset("a"), frozenset("aBp"), frozenset("q"), "B", keep=frozenset("pq")
    )
    assert changes == MembershipDiff(_ids(), _ids(), _ids())


# -- properties over generated schools ------------------------------------------------------------

PUPILS = [f"p{i}" for i in range(6)]
GUARDIANS = [f"g{i}" for i in range(5)]
TEACHERS = ["t0", "t1", "t2"]
STAFF = ["s0", "s1"]


@st.composite
def _schools(draw: st.DrawFn) -> tuple[OrgView, dict[str, str]]:
    classes = []
    for number in range(draw(st.integers(1, 4))):
        teachers = draw(st.frozensets(st.sampled_from(TEACHERS), max_size=2))
        classes.append(
            ClassView(
                class_id=f"c{number}",
                title=f"{number + 1}А",
                is_homeroom=draw(st.booleans()),
                student_ids=draw(st.frozensets(st.sampled_from(PUPILS), max_size=4)),
                teacher_ids=teachers,
                class_teacher_ids=frozenset(sorted(teachers)[:1]),
            )
        )
    guardians = st.frozensets(st.sampled_from(GUARDIANS), max_size=2)
    pupils = tuple(PupilView(pid, pid, draw(guardians)) for pid in PUPILS)
    org = OrgView("o", "Школа", frozenset(TEACHERS), frozenset(STAFF), tuple(classes), pupils)
    everyone = PUPILS + GUARDIANS + TEACHERS + STAFF
    linked = {pid: _user(pid) for pid in draw(st.frozensets(st.sampled_from(everyone)))}
    return org, linked


def _people_in(plan: RoomPlan, pool: list[str], linked: dict[str, str]) -> set[str]:
    return {pid for pid in pool if pid in linked and linked[pid] in plan.members}


@given(_schools())
def test_a_child_meets_only_the_families_of_its_classes(
    school: tuple[OrgView, dict[str, str]],
) -> None:
    org, linked = school
    classes_of = {pid: {c.class_id for c in org.classes if pid in c.student_ids} for pid in PUPILS}
    guardians_of = {pupil.person_id: pupil.guardian_ids for pupil in org.pupils}
    for plan in desired_rooms(org, linked):
        for child in _people_in(plan, PUPILS, linked):
            for guardian in _people_in(plan, GUARDIANS, linked):
                assert any(
                    guardian in guardians_of[other]
                    and (other == child or classes_of[other] & classes_of[child])
                    for other in PUPILS
                ), (plan.key, child, guardian)


@given(_schools())
def test_families_are_only_where_their_class_or_child_is(
    school: tuple[OrgView, dict[str, str]],
) -> None:
    org, linked = school
    students_of = {c.class_id: c.student_ids for c in org.classes}
    guardians_of = {pupil.person_id: pupil.guardian_ids for pupil in org.pupils}
    for plan in desired_rooms(org, linked):
        pupils = _people_in(plan, PUPILS, linked)
        guardians = _people_in(plan, GUARDIANS, linked)
        scope = plan.key.kind.scope
        if scope is Scope.ORG:
            assert not pupils and not guardians
        elif scope is Scope.CLASS:
            class_pupils = students_of[plan.key.scope_id]
            assert pupils <= class_pupils
            assert all(any(g in guardians_of[p] for p in class_pupils) for g in guardians)
        elif plan.key.kind is RoomKind.DOCUMENTS:  # one adult's own room: nobody else
            assert plan.members == {linked[plan.key.scope_id]}
        else:
            assert pupils <= {plan.key.scope_id}
            assert guardians <= guardians_of[plan.key.scope_id]


@given(_schools())
def test_plans_are_well_formed(school: tuple[OrgView, dict[str, str]]) -> None:
    org, linked = school
    plans = desired_rooms(org, linked)
    assert len({plan.key for plan in plans}) == len(plans)
    for plan in plans:
        assert plan.members <= set(linked.values())
        assert plan.moderators <= plan.members
        if plan.key.kind is RoomKind.DIARY:
            assert plan.members


@pytest.mark.parametrize(
    ("kind", "scope", "calls"),
    [
        (K.LESSON, "6b", True),
        (K.MEETING, "6b", True),
        (K.CLASS_NEWS, "6b", False),
        (K.CLASS_CHAT, "6b", False),
        (K.PARENTS, "6b", False),
    ],
)
def test_members_of_call_rooms_announce_themselves_in_the_call(
    kind: K, scope: str, calls: bool
) -> None:
    """Element Call and Element X send a call membership state event before joining; state is
    the platform's elsewhere (state_default), so call rooms name that one type."""
    plan = next(p for key, p in PLANS.items() if key.kind is kind)
    levels = power_levels(plan, BOT, None)
    assert ("org.matrix.msc3401.call.member" in levels["events"]) is calls
    if calls:
        assert levels["events"]["org.matrix.msc3401.call.member"] == 0


# -- waves: which rooms a run may reconcile side by side -------------------------------------


def _bare(key: RoomKey, parent: RoomKey | None = None, call: RoomKey | None = None) -> RoomPlan:
    return RoomPlan(key, "", "", frozenset(), frozenset(), 0, parent, call)


SPACE = RoomKey(RoomKind.SCHOOL_SPACE, "s1")
BROADCAST = RoomKey(RoomKind.BROADCAST, "s1")
CLASS_SPACE = RoomKey(RoomKind.CLASS_SPACE, "5a")
NEWS_5A = RoomKey(RoomKind.CLASS_NEWS, "5a")
DIARY = RoomKey(RoomKind.DIARY, "p1")


@pytest.mark.parametrize(
    ("plans", "waves"),
    [
        ([], []),
        # nothing names anything: all at once, in the given order
        ([_bare(DIARY), _bare(SPACE)], [[DIARY, SPACE]]),
        # a child after its space, even when listed first
        ([_bare(CLASS_SPACE, SPACE), _bare(SPACE)], [[SPACE], [CLASS_SPACE]]),
        # news: after its class space (after the school's) and after the broadcast room it joins
        (
            [
                _bare(SPACE),
                _bare(BROADCAST, SPACE, call=BROADCAST),  # its own call: no wait for itself
                _bare(CLASS_SPACE, SPACE),
                _bare(NEWS_5A, CLASS_SPACE, call=BROADCAST),
                _bare(DIARY),
            ],
            [[SPACE, DIARY], [BROADCAST, CLASS_SPACE], [NEWS_5A]],
        ),
        # a space or call room not planned in this run (made before, or failing): no wait
        ([_bare(NEWS_5A, CLASS_SPACE, call=BROADCAST)], [[NEWS_5A]]),
    ],
)
def test_provisioning_waves(plans: list[RoomPlan], waves: list[list[RoomKey]]) -> None:
    assert [[plan.key for plan in wave] for wave in provisioning_waves(plans)] == waves


def test_the_demo_schools_plans_come_in_waves_after_what_they_name() -> None:
    plans = desired_rooms(SCHOOL, LINKED)
    waves = provisioning_waves(plans)
    in_waves = [plan.key for wave in waves for plan in wave]
    assert len(in_waves) == len(plans) and set(in_waves) == {plan.key for plan in plans}
    wave_of = {plan.key: n for n, wave in enumerate(waves) for plan in wave}
    for plan in plans:
        for named in (plan.parent, plan.call):
            if named is not None and named != plan.key:
                assert wave_of[named] < wave_of[plan.key], (plan.key, named)


# -- reconcile runs: where a run asked for is ------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "requested", "started", "finished", "state"),
    [
        (1, 0, 0, 0, None),  # nothing asked for since the server started
        (0, 3, 3, 3, None),
        (4, 3, 3, 3, None),  # not asked for yet
        (1, 1, 0, 0, RunState.QUEUED),  # asked, its background process not yet begun
        (1, 1, 1, 0, RunState.RUNNING),
        (2, 2, 1, 0, RunState.QUEUED),  # asked during run 1: waits for it
        (1, 2, 1, 0, RunState.RUNNING),
        (2, 2, 2, 1, RunState.RUNNING),
        (2, 2, 2, 2, RunState.FINISHED),
        (1, 3, 3, 2, RunState.FINISHED),  # an earlier run stays finished
        (3, 3, 3, 2, RunState.RUNNING),
    ],
)
def test_run_state(
    asked: int, requested: int, started: int, finished: int, state: RunState | None
) -> None:
    assert run_state(asked, requested, started, finished) is state
