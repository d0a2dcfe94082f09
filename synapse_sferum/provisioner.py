"""Reconciles the rooms on the server with the directory's plan (docs/rooms-and-rules.md).

The plan is pure (policy.provisioning); this module only reads room state and sends the events
that close the gap, as the platform's bot. Runs after each import and periodically; runs never
overlap, and a request during a run makes one more run afterwards. Within a run, up to
`rooms_at_once` rooms are worked on side by side: Synapse orders the events of one room, not
those of different rooms, so a school's hundreds of rooms fill in together.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from typing import Any

import attrs
from synapse.module_api import ModuleApi, RatelimitOverride, UserID
from synapse.module_api.errors import SynapseError

from sferum_shared import Clock, matrix
from sferum_shared.ids import server_of
from sferum_shared.rooms import RoomKey, RoomKind, Scope
from sferum_shared.vocabulary import EventType, WidgetId
from synapse_sferum import compat, metrics, policy
from synapse_sferum.directory import guardianship_pairs
from synapse_sferum.lifecycle import Departures
from synapse_sferum.policy.invites import invites_widget
from synapse_sferum.sending import send_event
from synapse_sferum.service import DirectoryService
from synapse_sferum.store import rooms
from synapse_sferum.views import org_views

logger = logging.getLogger(__name__)

BOT_DISPLAY_NAME = "Школьная платформа"
UNPUBLISH_TASK = "unpublish_person_aliases"
RATE_LIMIT_RETRIES = 5
# Synapse's docs say per_second 0 disables a limit, but its limiter then allows nothing
# (1.163, api/ratelimiting.py): a limit too high to reach is what works.
UNLIMITED = RatelimitOverride(per_second=1_000_000.0, burst_count=1_000_000)

StateContents = Mapping[tuple[str, str], Any]  # a room's state: contents by (type, state key)


@attrs.define
class ReconcileReport:
    rooms_created: int = 0
    state_updates: int = 0
    joined: int = 0
    removed: int = 0
    deactivated: int = 0
    failures: int = 0

    def to_json(self) -> dict[str, int]:
        return attrs.asdict(self)


@attrs.define
class RunProgress:
    """How far one run has come, for the admin API to show while it goes."""

    run: int
    started_ms: int
    rooms_total: int = 0
    rooms_done: int = 0
    finished_ms: int | None = None
    report: ReconcileReport = attrs.Factory(ReconcileReport)

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "started_ms": self.started_ms,
            "finished_ms": self.finished_ms,
            "rooms_total": self.rooms_total,
            "rooms_done": self.rooms_done,
            **self.report.to_json(),
        }


class Provisioner:
    """Runs reconciles one at a time; requests made during a run coalesce into one more run.

    No lock: everything runs on the reactor thread, and Twisted's DeferredLock would wake
    waiters in the releasing run's log context, which Synapse's log contexts do not allow.
    """

    def __init__(
        self,
        api: ModuleApi,
        directory: DirectoryService,
        bot_user_id: str,
        partner_servers: frozenset[str],
        clock: Clock,
        departures: Departures | None = None,
        calls_url: str | None = None,
        rooms_at_once: int = 8,
    ):
        self._api = api
        self._clock = clock
        self._directory = directory
        self._departures = departures
        self._bot = bot_user_id
        self._partner_servers = partner_servers
        self._calls_url = calls_url  # where browsers reach the SFU; None: no SFU, no call widget
        self._rooms_at_once = rooms_at_once
        self._running = False
        self._pending = False
        self._requested = 0  # runs asked for
        self._started = 0  # runs begun (each covers every request made before it)
        self._finished = 0
        self.last_report = ReconcileReport()
        self._progress: RunProgress | None = None  # the run going now, or the last one
        self._names_to_check: set[str] = set()

    def request(self, check_names_of: Iterable[str] = ()) -> int:
        """Asks for a run that starts after now; returns its number to wait for.

        `check_names_of`: accounts whose roster record changed, so their display name may too.
        """
        self._names_to_check.update(check_names_of)
        self._requested = self._started + 1
        self._pending = True
        if not self._running:
            self._running = True
            self._api.run_as_background_process("sferum_reconcile", self._drain)
        return self._requested

    def status(self, run: int) -> dict[str, Any] | None:
        """Where run `run` is, the progress of the run going now (or the last one), and once
        `run` has finished, the report that covers it; None for a run nobody asked for."""
        state = policy.run_state(run, self._requested, self._started, self._finished)
        if state is None:
            return None
        answer: dict[str, Any] = {"run": run, "state": state.value}
        if self._progress is not None:
            answer["progress"] = self._progress.to_json()
        if state is policy.RunState.FINISHED:
            answer["reconcile"] = self.last_report.to_json()
        return answer

    async def _drain(self) -> None:
        try:
            while self._pending:
                self._pending = False
                self._started += 1
                progress = RunProgress(self._started, self._clock.ms())
                self._progress = progress
                try:
                    await self._reconcile_once(progress)
                except Exception:
                    logger.exception("synapse_sferum: reconcile failed")
                    progress.report.failures += 1
                progress.finished_ms = self._clock.ms()
                self.last_report = progress.report
                seconds = (progress.finished_ms - progress.started_ms) / 1000
                metrics.record_reconcile(self.last_report.to_json(), seconds)
                self._finished = self._started
        finally:
            self._running = False

    async def _reconcile_once(self, progress: RunProgress) -> None:
        report = progress.report
        await self._unpublish_person_aliases()
        if self._departures is not None:
            report.deactivated, report.failures = await self._departures.deactivate_due()
        await self._sync_display_names(report)
        snapshot = await self._directory.snapshot()
        links = await self._directory.all_links()
        pairs = guardianship_pairs(snapshot.people)
        plans: dict[RoomKey, tuple[policy.RoomPlan, str]] = {}
        for org in org_views(snapshot, pairs, self._directory.today()):
            for plan in policy.desired_rooms(org, links):
                # a person's own room is planned by their first school only
                plans.setdefault(plan.key, (plan, org.org_id))
        # The rooms made so far, read once; the rooms this run makes join them as it goes.
        known = await self._directory.all_rooms()
        unplanned = [room_id for key, room_id in known.items() if key not in plans]
        waves = policy.provisioning_waves([plan for plan, _ in plans.values()])
        progress.rooms_total = len(plans) + len(unplanned)
        for wave in waves:
            await self._side_by_side(
                self._applying(plan, plans[plan.key][1], known, progress) for plan in wave
            )
        await self._side_by_side(self._emptying(room_id, progress) for room_id in unplanned)
        logger.info("synapse_sferum: reconcile done: %s", report.to_json())

    async def _applying(
        self,
        plan: policy.RoomPlan,
        org_id: str,
        known: dict[RoomKey, str],
        progress: RunProgress,
    ) -> None:
        try:
            await self._apply_plan(plan, org_id, known, progress.report)
        except Exception:
            progress.report.failures += 1
            logger.exception("synapse_sferum: provisioning %s failed", plan.key)
        progress.rooms_done += 1

    async def _emptying(self, room_id: str, progress: RunProgress) -> None:
        """A room no longer planned (a class gone from the roster): everyone but the bot out."""
        try:
            await self._directory.set_planned_members(room_id, frozenset())
            state = await self._api.get_room_state(room_id, [(matrix.MEMBER, None)])
            await self._sync_members(room_id, frozenset(), _contents(state), progress.report)
        except Exception:
            progress.report.failures += 1
            logger.exception("synapse_sferum: emptying %s failed", room_id)
        progress.rooms_done += 1

    async def _side_by_side(self, jobs: Iterator[Awaitable[None]]) -> None:
        """Runs the jobs, `rooms_at_once` at a time, and returns when all are done.

        Each worker is one of Synapse's background processes taking the next job in turn (all
        on the reactor thread, so no lock); ModuleApi has no way to await several at once, so
        the caller looks every 50 ms whether the workers are through. A job handles its own
        errors.
        """
        through = 0

        async def worker() -> None:
            nonlocal through
            try:
                for job in jobs:
                    await job
            finally:
                through += 1

        for _ in range(self._rooms_at_once):
            self._api.run_as_background_process("sferum_reconcile_rooms", worker)
        while through < self._rooms_at_once:
            await self._api.sleep(0.05)

    async def _unpublish_person_aliases(self) -> None:
        """Once: takes the aliases of rooms of one person (diaries) out of the directory.

        Rooms made before those aliases were dropped (issue 11) still have them, and anyone
        signed in could look them up; done once, as it asks about every such room.
        """
        if await self._directory.run("sferum_done", rooms.is_done_txn, UNPUBLISH_TASK):
            return
        removed = 0
        for key in await self._directory.all_rooms():
            if not key.kind.published_alias:
                removed += await compat.delete_room_alias(
                    self._api, key.alias(self._api.server_name)
                )
        await self._directory.run(
            "sferum_mark_done", rooms.mark_done_txn, UNPUBLISH_TASK, self._clock.ms()
        )
        if removed:
            logger.info("synapse_sferum: took %d diary aliases out of the directory", removed)

    async def _sync_display_names(self, report: ReconcileReport) -> None:
        """Global display names follow the roster (and the badge); users cannot change them.

        One account that fails is counted and checked again at the next run; it neither stops
        the others nor the rooms' reconcile after them."""
        user_ids, self._names_to_check = sorted(self._names_to_check), set()
        for user_id in user_ids:
            try:
                await self._sync_display_name(user_id, report)
            except Exception:
                report.failures += 1
                self._names_to_check.add(user_id)
                logger.exception("synapse_sferum: the display name of %s failed", user_id)

    async def _sync_display_name(self, user_id: str, report: ReconcileReport) -> None:
        member = await self._directory.get_member(user_id)
        if member is None:
            return
        expected = policy.expected_display_name(member)
        profile = await self._api.get_profile_for_user(UserID.from_string(user_id).localpart)
        if profile.display_name != expected:
            await self._api.set_displayname(UserID.from_string(user_id), expected)
            report.state_updates += 1

    async def _apply_plan(
        self,
        plan: policy.RoomPlan,
        org_id: str,
        known: dict[RoomKey, str],
        report: ReconcileReport,
    ) -> None:
        """`known`: the room IDs of the run by key, made in earlier waves included."""
        parent_id = None if plan.parent is None else known.get(plan.parent)
        room_id = known.get(plan.key) or await self._make_room(
            plan, org_id, parent_id, known, report
        )
        # One read of the room's whole state serves every comparison below, members included.
        # What the room is, what it is called, its widgets and space: mended when missing,
        # emptied (a redaction leaves next to nothing) or changed by anyone but the platform.
        current = _contents(await self._api.get_room_state(room_id))
        wanted = self._wanted_state(plan, org_id, room_id, parent_id, known, current)
        for (event_type, state_key), content in wanted.items():
            if current.get((event_type, state_key)) != content:
                await self._send_state(room_id, event_type, state_key, content)
                report.state_updates += 1
        if parent_id is not None:
            await self._link_from_space(parent_id, room_id, report)
        await self._directory.set_planned_members(room_id, plan.members)
        await self._sync_members(
            room_id, plan.members, current, report, admits_partners=plan.federate
        )

    def _wanted_state(
        self,
        plan: policy.RoomPlan,
        org_id: str,
        room_id: str | None,
        parent_id: str | None,
        known: Mapping[RoomKey, str],
        current: StateContents,
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """The platform's state of the room, by (type, state key), for `current` (empty for a
        room about to be made, whose ID is not known yet)."""
        wanted: dict[tuple[str, str], dict[str, Any]] = {
            (matrix.POWER_LEVELS, ""): policy.power_levels(
                plan, self._bot, current.get((matrix.POWER_LEVELS, ""))
            ),
            (EventType.ROOM_KIND, ""): self._kind_content(plan.key, org_id),
            (matrix.NAME, ""): {"name": plan.name},
            (matrix.TOPIC, ""): {"topic": plan.topic},
        }
        # The SFU's call page as a widget. A class news room's names the broadcast room, made
        # in an earlier wave of the run (policy.provisioning_waves); should that have failed,
        # the next run puts it in.
        call_room_id = None
        if plan.call is not None:
            call_room_id = room_id if plan.call == plan.key else known.get(plan.call)
        if call_room_id is not None:
            wanted[matrix.WIDGETS, WidgetId.CALL] = policy.call_widget(
                plan, call_room_id, self._calls_url
            )
        elif plan.archived and current.get((matrix.WIDGETS, WidgetId.CALL)):
            wanted[matrix.WIDGETS, WidgetId.CALL] = {}  # no calls in an archived class: emptied
        if plan.key.kind is RoomKind.STAFF:  # the page of invite links, for class teachers
            wanted[matrix.WIDGETS, WidgetId.INVITES] = invites_widget(self._api.public_baseurl)
        if parent_id is not None:
            wanted[matrix.SPACE_PARENT, parent_id] = {**self._via, "canonical": True}
        return wanted

    @property
    def _via(self) -> dict[str, list[str]]:
        return {"via": [self._api.server_name]}

    def _kind_content(self, key: RoomKey, org_id: str) -> dict[str, str]:
        content = {"kind": key.kind.value, "org": org_id}
        if key.kind.scope is Scope.CLASS:
            content["class"] = key.scope_id
        elif key.kind.scope is Scope.PERSON:
            content["person"] = key.scope_id
        return content

    async def _make_room(
        self,
        plan: policy.RoomPlan,
        org_id: str,
        parent_id: str | None,
        known: dict[RoomKey, str],
        report: ReconcileReport,
    ) -> str:
        """The room the plan's key has none of yet: adopted if it exists, else created."""
        room_id = await self._adoptable_room(plan.key)
        if room_id is None:
            room_id = await self._create_room(plan, org_id, parent_id, known)
            report.rooms_created += 1
        await self._directory.record_room(plan.key, room_id)
        known[plan.key] = room_id
        return room_id

    async def _create_room(
        self,
        plan: policy.RoomPlan,
        org_id: str,
        parent_id: str | None,
        known: Mapping[RoomKey, str],
    ) -> str:
        """Makes the room with all its planned state in Synapse's one batch of creation events
        (name and topic too, exactly as planned: Synapse's own `topic` adds `m.topic`, which
        the comparison would then send again)."""
        creation_content: dict[str, Any] = {"m.federate": plan.federate}
        if plan.is_space:
            creation_content["type"] = "m.space"
        alias = (
            {"room_alias_name": plan.key.alias_localpart()}
            if plan.key.kind.published_alias
            else {}
        )
        planned = self._wanted_state(plan, org_id, None, parent_id, known, {})
        power_levels = planned.pop((matrix.POWER_LEVELS, ""))
        room_id, _ = await self._api.create_room(
            self._bot,
            {
                "preset": "private_chat",
                "visibility": "private",
                **alias,
                "creation_content": creation_content,
                "initial_state": [
                    {"type": matrix.GUEST_ACCESS, "content": {"guest_access": "forbidden"}},
                    {
                        "type": matrix.HISTORY_VISIBILITY,
                        "content": {"history_visibility": "shared"},
                    },
                    *(
                        {"type": event_type, "state_key": state_key, "content": content}
                        for (event_type, state_key), content in planned.items()
                    ),
                ],
                "power_level_content_override": power_levels,
            },
            ratelimit=False,
            creator_join_profile={"displayname": BOT_DISPLAY_NAME},
        )
        return room_id

    async def _adoptable_room(self, key: RoomKey) -> str | None:
        """A room already behind the key's alias, made before our table knew it (a restored
        database): adopted rather than made twice. Rooms without an alias have none to find."""
        if not key.kind.published_alias:
            return None
        alias = key.alias(self._api.server_name)
        try:
            room_id, _ = await self._api.lookup_room_alias(alias)
        except SynapseError:
            return None
        logger.warning("synapse_sferum: adopting existing room %s for %s", room_id, alias)
        return room_id

    async def _send_state(
        self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> None:
        await send_event(self._api, self._bot, room_id, event_type, content, state_key=state_key)

    async def _link_from_space(
        self, parent_id: str, child_id: str, report: ReconcileReport
    ) -> None:
        """The space's `m.space.child` for the room (its `m.space.parent` is the room's own)."""
        in_parent = _contents(
            await self._api.get_room_state(parent_id, [(matrix.SPACE_CHILD, child_id)])
        )
        if in_parent.get((matrix.SPACE_CHILD, child_id)) != self._via:
            await self._send_state(parent_id, matrix.SPACE_CHILD, child_id, self._via)
            report.state_updates += 1

    async def _sync_members(
        self,
        room_id: str,
        wanted: frozenset[str],
        current: StateContents,
        report: ReconcileReport,
        admits_partners: bool = False,
    ) -> None:
        by_membership: dict[str, set[str]] = {"join": set(), "invite": set()}
        for (event_type, user_id), content in current.items():
            membership = content.get("membership")
            if event_type == matrix.MEMBER and membership in by_membership:
                by_membership[membership].add(user_id)
        present = by_membership["join"] | by_membership["invite"]
        partners = frozenset(
            user_id
            for user_id in present
            if admits_partners
            and not self._api.is_mine(user_id)
            and server_of(user_id) in self._partner_servers
        )
        changes = policy.membership_changes(
            wanted,
            frozenset(by_membership["join"]),
            frozenset(by_membership["invite"]),
            self._bot,
            keep=partners,
        )
        for user_id in sorted(changes.to_join):
            try:
                if user_id in changes.to_invite:
                    await self._membership(self._bot, user_id, room_id, "invite")
                if self._api.is_mine(user_id):
                    await self._membership(user_id, user_id, room_id, "join")
                report.joined += 1
            except Exception:
                report.failures += 1
                logger.exception("synapse_sferum: could not add %s to %s", user_id, room_id)
        for user_id in sorted(changes.to_remove):
            try:
                await self._membership(self._bot, user_id, room_id, "leave")
                report.removed += 1
            except Exception:
                report.failures += 1
                logger.exception("synapse_sferum: could not remove %s from %s", user_id, room_id)

    async def ratelimit_override(
        self, user_id: str, limiter_name: str
    ) -> RatelimitOverride | None:
        """The platform's own actions skip rate limits, as its appservice registration says.

        Synapse exempts an appservice's requests, but not those a module makes in its name.
        (Join limits ask no module: homeserver.yaml raises them for the platform's joins.)
        """
        return UNLIMITED if user_id == self._bot else None

    async def _membership(self, sender: str, target: str, room_id: str, membership: str) -> None:
        """One membership change; waits out rate limits (such as joins per room) a few times."""
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            try:
                await self._api.update_room_membership(sender, target, room_id, membership)
                return
            except SynapseError as e:
                if e.code != 429 or attempt == RATE_LIMIT_RETRIES:
                    raise
                retry_after_ms = getattr(e, "retry_after_ms", None) or 1000
                logger.info(
                    "synapse_sferum: %s of %s in %s rate-limited by %s; retrying in %d ms",
                    membership,
                    target,
                    room_id,
                    getattr(e, "limiter_name", "?"),
                    retry_after_ms,
                )
            await self._api.sleep(min(retry_after_ms, 30_000) / 1000)


def _contents(state: Mapping[tuple[str, str], Any]) -> dict[tuple[str, str], Any]:
    """Contents of the state events ModuleApi.get_room_state gives, by (type, state key)."""
    return {key: event.content for key, event in state.items()}
