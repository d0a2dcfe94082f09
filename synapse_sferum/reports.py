"""Reports of messages reach the school's staff room (docs/rooms-and-rules.md «Reports»).

Synapse writes a report (`POST /rooms/{r}/report/{e}`) to its `event_reports` table and tells no
module (element-hq/synapse#18904), so a loop on the background-tasks instance reads the rows
after the last one it handled (`compat.event_reports_after_txn`) and posts a notice for each
into the staff room of the reported room's school, from the platform's bot. The mark
(`sferum_report_marks`) moves past a report as soon as its notice is posted, so a restart
repeats none (only a crash between the two steps could). A notice that fails to post is
retried at the next pass, before any later report; after `MAX_ATTEMPTS` the report is logged
and left behind, so one bad report does not hold the others forever.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from synapse.events import EventBase
from synapse.module_api import ModuleApi

from sferum_shared import matrix
from sferum_shared.rooms import RoomKey, RoomKind
from sferum_shared.vocabulary import EventType, Key
from synapse_sferum import compat
from synapse_sferum.config import ReportsConfig
from synapse_sferum.policy import reports as rules
from synapse_sferum.sending import send_event
from synapse_sferum.service import DirectoryService
from synapse_sferum.store import reports as store

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
BATCH = 100  # reports read per pass; the rest at the next
SETTLE_MS = 2_000  # see compat.event_reports_after_txn

# What the notice says of the reported room: its kind event (the school), name, members.
REPORTED_ROOM_STATE = [
    (matrix.CREATE, ""),
    (matrix.NAME, ""),
    (EventType.ROOM_KIND, ""),
    (matrix.MEMBER, None),
]

StateMap = Mapping[tuple[str, str], EventBase]


class ReportRelay:
    def __init__(
        self,
        api: ModuleApi,
        directory: DirectoryService,
        bot_user_id: str,
        config: ReportsConfig,
    ):
        self._api = api
        self._directory = directory
        self._bot = bot_user_id
        self._interval_ms = config.check_interval_seconds * 1000
        self._failures: dict[int, int] = {}  # report id -> failed attempts (this process)

    def register(self) -> None:
        # Only on the instance that runs background tasks: one reader, one notice per report.
        self._api.looping_background_call(self.check, self._interval_ms, desc="sferum_reports")

    async def check(self) -> None:
        try:
            await self._check()
        except Exception:
            logger.exception("synapse_sferum: reports not read; trying again at the next pass")

    async def _check(self) -> None:
        mark = await self._directory.run(
            "sferum_report_mark", store.report_mark_txn, store.EVENT_REPORTS
        )
        if mark is None:
            # The first pass on this server: reports made before the platform read them are
            # left to the admin API, not poured into the staff rooms at once.
            mark = await self._directory.run(
                "sferum_latest_report", compat.latest_event_report_txn
            )
            await self._advance(mark)
            logger.info("synapse_sferum: reports after #%d will reach the staff rooms", mark)
            return
        settled = self._api.get_current_time_msec() - SETTLE_MS
        found = await self._directory.run(
            "sferum_event_reports", compat.event_reports_after_txn, mark, settled, BATCH
        )
        for report in found:
            if not await self._relay(report):
                return
            await self._advance(report.report_id)

    async def _advance(self, report_id: int) -> None:
        await self._directory.run(
            "sferum_set_report_mark", store.set_report_mark_txn, store.EVENT_REPORTS, report_id
        )

    async def _relay(self, report: rules.EventReport) -> bool:
        """Tells the staff of one report; False: try it again at the next pass."""
        try:
            await self._announce(report)
        except Exception:
            attempts = self._failures.get(report.report_id, 0) + 1
            if attempts < MAX_ATTEMPTS:
                self._failures[report.report_id] = attempts
                logger.warning(
                    "synapse_sferum: report #%d not posted (attempt %d); retrying",
                    report.report_id,
                    attempts,
                    exc_info=True,
                )
                return False
            logger.exception(
                "synapse_sferum: report #%d not posted after %d attempts; skipped (see the "
                "admin API's event_reports)",
                report.report_id,
                attempts,
            )
        self._failures.pop(report.report_id, None)
        return True

    async def _announce(self, report: rules.EventReport) -> None:
        state = await self._api.get_room_state(report.room_id, REPORTED_ROOM_STATE)
        key = await self._directory.room_key(report.room_id)
        schools = await self._schools(key, state)
        if not schools:
            logger.info(
                "synapse_sferum: report #%d is of room %s, outside any school; not posted",
                report.report_id,
                report.room_id,
            )
            return
        event = await compat.room_event(self._api, report.event_id, report.room_id)
        for org_id in sorted(schools):
            staff_room = await self._directory.room_id(RoomKey(RoomKind.STAFF, org_id))
            if staff_room is None:
                logger.warning(
                    "synapse_sferum: report #%d: school %s has no staff room; not posted",
                    report.report_id,
                    org_id,
                )
                continue
            facts = await self._facts(report, key, state, event, staff_room)
            await send_event(
                self._api, self._bot, staff_room, matrix.MESSAGE, rules.notice_content(facts)
            )

    async def _schools(self, key: RoomKey | None, state: StateMap) -> frozenset[str]:
        """A provisioned room's school (its kind event says), or those of a users' room's
        members."""
        if key is not None:
            kind = state.get((EventType.ROOM_KIND, ""))
            org = kind.content.get("org") if kind is not None else None
            return frozenset({org}) if isinstance(org, str) else frozenset()
        members = [
            await self._directory.get_member(state_key)
            for (event_type, state_key), event in state.items()
            if event_type == matrix.MEMBER and event.membership == matrix.JOIN
        ]
        return rules.users_room_schools(m for m in members if m is not None)

    async def _facts(
        self,
        report: rules.EventReport,
        key: RoomKey | None,
        state: StateMap,
        event: EventBase | None,
        staff_room: str,
    ) -> rules.ReportFacts:
        sender = event.sender if event is not None else None
        return rules.ReportFacts(
            report=report,
            reporter=await self._label(report.reporter),
            sender=await self._label(sender) if sender is not None else None,
            sender_id=sender,
            room_title=_room_title(key, state),
            text_allowed=rules.staff_may_read(
                key.kind if key else None, await self._has_outsiders(staff_room)
            ),
            text=rules.reported_text(dict(event.content)) if event is not None else None,
        )

    async def _label(self, user_id: str) -> str:
        return rules.person_label(user_id, await self._directory.get_member(user_id))

    async def _has_outsiders(self, room_id: str) -> bool:
        """Whether anyone from another server is in (or invited to) the staff room."""
        state = await self._api.get_room_state(room_id, [(matrix.MEMBER, None)])
        return any(
            event.membership in (matrix.JOIN, matrix.INVITE) and not self._api.is_mine(user_id)
            for (_, user_id), event in state.items()
        )


def _room_title(key: RoomKey | None, state: StateMap) -> str:
    name_event = state.get((matrix.NAME, ""))
    name = name_event.content.get("name") if name_event is not None else None
    if isinstance(name, str) and name:
        return name
    if key is not None:
        return key.kind.value
    create = state.get((matrix.CREATE, ""))
    direct = create is not None and bool(create.content.get(Key.DIRECT))
    return "личный чат" if direct else "группа без названия"
