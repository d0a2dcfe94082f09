"""Reconciles the rooms on the server with the directory's plan (docs/rooms-and-rules.md).

The plan is pure (policy.provisioning); this module only reads room state and sends the events
that close the gap, as the platform's bot. Runs after each import and periodically; runs never
overlap, and a request during a run makes one more run afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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
    ):
        self._api = api
        self._clock = clock
        self._directory = directory
        self._departures = departures
        self._bot = bot_user_id
        self._partner_servers = partner_servers
        self._calls_url = calls_url  # where browsers reach the SFU; None: no SFU, no call widget
        self._running = False
        self._pending = False
        self._requested = 0  # runs asked for
        self._started = 0  # runs begun (each covers every request made before it)
        self._finished = 0
        self.last_report = ReconcileReport()
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

    async def reconcile_now(self) -> ReconcileReport:
        """Requests a run and waits until it has finished."""
        wanted = self.request()
        while self._finished < wanted:
            await self._api.sleep(0.05)
        return self.last_report

    async def _drain(self) -> None:
        try:
            while self._pending:
                self._pending = False
                self._started += 1
                began = self._clock.seconds()
                try:
                    self.last_report = await self._reconcile_once()
                except Exception:
                    logger.exception("synapse_sferum: reconcile failed")
                    self.last_report = ReconcileReport(failures=1)
                metrics.record_reconcile(self.last_report.to_json(), self._clock.seconds() - began)
                self._finished = self._started
        finally:
            self._running = False

    async def _reconcile_once(self) -> ReconcileReport:
        report = ReconcileReport()
        await self._unpublish_person_aliases()
        if self._departures is not None:
            report.deactivated, report.failures = await self._departures.deactivate_due()
        await self._sync_display_names(report)
        snapshot = await self._directory.snapshot()
        links = await self._directory.all_links()
        pairs = guardianship_pairs(snapshot.people)
        planned: set[RoomKey] = set()
        for org in org_views(snapshot, pairs, self._directory.today()):
            plans = policy.desired_rooms(org, links)
            # Spaces first, so that children can be linked to them.
            for plan in sorted(plans, key=lambda p: not p.is_space):
                if plan.key in planned:
                    continue  # a person's own room, planned by their first school already
                planned.add(plan.key)
                try:
                    await self._apply_plan(plan, org.org_id, report)
                except Exception:
                    report.failures += 1
                    logger.exception("synapse_sferum: provisioning %s failed", plan.key)
        for key, room_id in (await self._directory.all_rooms()).items():
            if key not in planned:
                await self._sync_members(room_id, frozenset(), report)
        logger.info("synapse_sferum: reconcile done: %s", report.to_json())
        return report

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
        self, plan: policy.RoomPlan, org_id: str, report: ReconcileReport
    ) -> None:
        room_id = await self._ensure_room(plan, org_id, report)
        await self._sync_power_levels(room_id, plan, report)
        # What the room is and what it is called: mended when missing, emptied (a redaction
        # leaves next to nothing) or changed by anyone but the platform.
        await self._sync_state(
            room_id, EventType.ROOM_KIND, "", self._kind_content(plan.key, org_id), report
        )
        await self._sync_state(room_id, matrix.NAME, "", {"name": plan.name}, report)
        await self._sync_state(room_id, matrix.TOPIC, "", {"topic": plan.topic}, report)
        await self._sync_call_widget(room_id, plan, report)
        if plan.key.kind is RoomKind.STAFF:  # the page of invite links, for class teachers
            wanted = invites_widget(self._api.public_baseurl)
            await self._sync_state(room_id, matrix.WIDGETS, WidgetId.INVITES, wanted, report)
        if plan.parent is not None:
            parent_id = await self._directory.room_id(plan.parent)
            if parent_id is not None:
                await self._link_space(parent_id, room_id, report)
        await self._sync_members(room_id, plan.members, report, admits_partners=plan.federate)

    def _kind_content(self, key: RoomKey, org_id: str) -> dict[str, str]:
        content = {"kind": key.kind.value, "org": org_id}
        if key.kind.scope is Scope.CLASS:
            content["class"] = key.scope_id
        elif key.kind.scope is Scope.PERSON:
            content["person"] = key.scope_id
        return content

    async def _ensure_room(
        self, plan: policy.RoomPlan, org_id: str, report: ReconcileReport
    ) -> str:
        room_id = await self._directory.room_id(plan.key)
        if room_id is not None:
            return room_id
        adopted = await self._adoptable_room(plan.key)
        if adopted is not None:
            room_id = adopted
        else:
            creation_content: dict[str, Any] = {"m.federate": plan.federate}
            if plan.is_space:
                creation_content["type"] = "m.space"
            alias = (
                {"room_alias_name": plan.key.alias_localpart()}
                if plan.key.kind.published_alias
                else {}
            )
            room_id, _ = await self._api.create_room(
                self._bot,
                {
                    "preset": "private_chat",
                    "visibility": "private",
                    "name": plan.name,
                    "topic": plan.topic,
                    **alias,
                    "creation_content": creation_content,
                    "initial_state": [
                        {
                            "type": EventType.ROOM_KIND,
                            "state_key": "",
                            "content": self._kind_content(plan.key, org_id),
                        },
                        {"type": matrix.GUEST_ACCESS, "content": {"guest_access": "forbidden"}},
                        {
                            "type": matrix.HISTORY_VISIBILITY,
                            "content": {"history_visibility": "shared"},
                        },
                    ],
                    "power_level_content_override": policy.power_levels(plan, self._bot, None),
                },
                ratelimit=False,
                creator_join_profile={"displayname": BOT_DISPLAY_NAME},
            )
            report.rooms_created += 1
        await self._directory.record_room(plan.key, room_id)
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

    async def _state_content(self, room_id: str, event_type: str, state_key: str) -> Any:
        state = await self._api.get_room_state(room_id, [(event_type, state_key)])
        event = state.get((event_type, state_key))
        return event.content if event is not None else None

    async def _send_state(
        self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> None:
        await send_event(self._api, self._bot, room_id, event_type, content, state_key=state_key)

    async def _sync_power_levels(
        self, room_id: str, plan: policy.RoomPlan, report: ReconcileReport
    ) -> None:
        current = await self._state_content(room_id, matrix.POWER_LEVELS, "")
        wanted = policy.power_levels(plan, self._bot, current)
        if current != wanted:
            await self._send_state(room_id, matrix.POWER_LEVELS, "", wanted)
            report.state_updates += 1

    async def _sync_call_widget(
        self, room_id: str, plan: policy.RoomPlan, report: ReconcileReport
    ) -> None:
        """The SFU's call page as a widget: set once when a room is made, mended when it differs.

        A class news room's widget names the broadcast room, made earlier in the same run (the
        school's rooms come first); should that have failed, the next run puts the widget in.
        """
        if plan.call is None:
            if plan.archived and await self._state_content(room_id, matrix.WIDGETS, WidgetId.CALL):
                # an archived class has no calls: its widget goes, emptied
                await self._send_state(room_id, matrix.WIDGETS, WidgetId.CALL, {})
                report.state_updates += 1
            return
        call_room_id = (
            room_id if plan.call == plan.key else await self._directory.room_id(plan.call)
        )
        if call_room_id is None:
            return
        wanted = policy.call_widget(plan, call_room_id, self._calls_url)
        await self._sync_state(room_id, matrix.WIDGETS, WidgetId.CALL, wanted, report)

    async def _link_space(self, parent_id: str, child_id: str, report: ReconcileReport) -> None:
        via = {"via": [self._api.server_name]}
        await self._sync_state(parent_id, matrix.SPACE_CHILD, child_id, via, report)
        await self._sync_state(
            child_id, matrix.SPACE_PARENT, parent_id, {**via, "canonical": True}, report
        )

    async def _sync_state(
        self,
        room_id: str,
        event_type: str,
        state_key: str,
        wanted: dict[str, Any],
        report: ReconcileReport,
    ) -> None:
        """Sends the state unless the room has exactly this content already."""
        if await self._state_content(room_id, event_type, state_key) != wanted:
            await self._send_state(room_id, event_type, state_key, wanted)
            report.state_updates += 1

    async def _sync_members(
        self,
        room_id: str,
        wanted: frozenset[str],
        report: ReconcileReport,
        admits_partners: bool = False,
    ) -> None:
        await self._directory.set_planned_members(room_id, wanted)
        state = await self._api.get_room_state(room_id, [(matrix.MEMBER, None)])
        by_membership: dict[str, set[str]] = {"join": set(), "invite": set()}
        for (event_type, user_id), event in state.items():
            if event_type == matrix.MEMBER and event.membership in by_membership:
                by_membership[event.membership].add(user_id)
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
