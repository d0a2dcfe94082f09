"""Quiet hours (docs/identity.md): outside a teacher's working hours, no pushes and one automatic
notice.

The rules are in `policy.quiet`; this glue keeps a teacher's schedule, switches pushes off and on,
and answers. The schedule's source of truth is the teacher's account data `ru.sferum.quiet_hours`,
written by any client or by the platform's bot for a chat command (`!часы пн-пт 08:00-17:00`);
each change is copied into `sferum_quiet_schedules` so that the schedule loop can list them.

Pushes: the loop puts one silencing push rule in place when a quiet period starts and takes it
away when it ends (see `compat.silence_pushes`). It runs on the main process, the one instance
where ModuleApi lets a module change push rules (`set_push_rule_action` refuses on workers) and
where Synapse writes them, unless an admin moves `stream_writers.push_rules` to a worker, which
quiet hours do not support (each switch then fails, logged). The background-tasks instance may
be a worker, so the loop does not run there. It runs every `check_interval_seconds` as a safety
net (restarts, a schedule saved on a worker) and is also timed to the next change, so pushes
resume on the minute. `sferum_quiet_silenced` records whose pushes it silenced, so a restart
finishes what it began.

Automatic notices: when a pupil or a guardian writes in a direct chat to a teacher who is in a
quiet period, the teacher "answers" once per conversation and quiet period with an `m.notice`
marked `ru.sferum.auto_reply`. It is sent as the teacher, like an e-mail out-of-office reply:
the platform's bot is not a member of direct chats, and adding it would put a third person in a
DM (which the rules refuse) and show the bot to both sides. A unique key in
`sferum_quiet_notices`, claimed before sending, makes the notice at most once even with workers
or retried notifications.

Chat commands go to the bot in a room where only the teacher and the bot are joined. The bot
joins when a teacher or staff member invites it into such a room.

Nothing here refuses or holds back an event: every callback only observes, and logs and swallows
what goes wrong.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from synapse.events import EventBase
from synapse.module_api import ModuleApi
from synapse.types import StateMap

from sferum_shared import Clock, matrix
from sferum_shared.model import Member, Role
from sferum_shared.vocabulary import EventType, Key
from synapse_sferum import compat
from synapse_sferum.botchat import is_chat_with_bot, joined, say
from synapse_sferum.compat import EventCallback
from synapse_sferum.policy import quiet, quiet_chat
from synapse_sferum.sending import send_event
from synapse_sferum.service import DirectoryService
from synapse_sferum.state_needs import NO_STATE, StateNeeds, needs
from synapse_sferum.store import quiet as store

logger = logging.getLogger(__name__)

STARTUP_DELAY_MS = 5_000
TIMER_SLACK_MS = 100  # wake just after a change, never just before it
NOTICE_RETENTION_MS = 14 * 24 * 3600 * 1000  # a quiet period lasts at most a week
MESSAGE_TYPES = frozenset({matrix.MESSAGE, matrix.ENCRYPTED, matrix.STICKER})


def quiet_state_needs(event: EventBase, bot: str) -> StateNeeds:
    """What `QuietHours.on_new_event` reads of the room's state: every member only for the
    bot's invitation and for a command (the bot's chat with one adult), else whether the room
    is a direct chat (its members are read then, `on_new_event`)."""
    if event.type == matrix.MEMBER:
        invites_bot = event.state_key == bot and event.membership == "invite"
        return needs((matrix.MEMBER, None)) if invites_bot else NO_STATE
    if event.type not in MESSAGE_TYPES or event.is_state():
        return NO_STATE
    content = event.content
    if content.get("msgtype") == "m.notice" or content.get(Key.AUTO_REPLY):
        return NO_STATE
    body = content.get("body")
    if isinstance(body, str) and body.lstrip().lower().startswith(quiet_chat.COMMAND_PREFIXES):
        return needs((matrix.MEMBER, None), (matrix.CREATE, ""))
    return needs((matrix.CREATE, ""))


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class QuietHours:
    def __init__(
        self,
        api: ModuleApi,
        directory: DirectoryService,
        bot_user_id: str,
        config: quiet.QuietHoursConfig,
        clock: Clock,
    ):
        self._api = api
        self._directory = directory
        self._clock = clock
        self._bot = bot_user_id
        self._config = config
        self._on_main = api.worker_app is None
        self._wake_ms: int | None = None  # the moment of the pending timed pass
        self._running = False
        self._run_again = False

    def register(self) -> None:
        if self._config.enabled:
            self._api.register_account_data_callbacks(
                on_account_data_updated=self.on_account_data_updated
            )
            compat.register_event_callbacks(
                self._api, on_new_event=EventCallback(self.on_new_event, self.needed_state)
            )
        if not self._on_main:
            return
        # Switched off, the first run still gives back every push it silenced.
        self._api.delayed_background_call(
            STARTUP_DELAY_MS, self.run_schedule, desc="sferum_quiet_hours_startup"
        )
        if self._config.enabled:
            # On the main process, wherever background tasks run (see the docstring).
            self._api.looping_background_call(
                self.run_schedule,
                self._config.check_interval_seconds * 1000,
                desc="sferum_quiet_hours",
                run_on_all_instances=True,
            )

    # -- the schedule ----------------------------------------------------------------------

    async def on_account_data_updated(
        self, user_id: str, room_id: str | None, account_data_type: str, content: Mapping[str, Any]
    ) -> None:
        """Copies a teacher's new schedule for the loop and applies it at once if it can."""
        if room_id is not None or account_data_type != EventType.QUIET_HOURS:
            return
        try:
            await self._keep_schedule(user_id, content)
            if self._on_main:
                await self.run_schedule()
        except Exception:
            logger.exception("synapse_sferum: quiet hours of %s not updated", user_id)

    async def _keep_schedule(self, user_id: str, content: Mapping[str, Any]) -> None:
        """Only teachers' and staff's valid, enabled schedules are kept; `{}` is a deletion."""
        schedule = None
        member = await self._directory.get_member(user_id)
        if member is None or not member.is_school_adult:
            if content:
                logger.info("synapse_sferum: %s may not set quiet hours; ignored", user_id)
        else:
            try:
                schedule = quiet.parse_content(content, self._config.default_timezone)
            except quiet.ScheduleError as e:
                logger.warning("synapse_sferum: quiet hours of %s ignored: %s", user_id, e)
        if schedule is None or not schedule.enabled:
            await self._directory.run("sferum_quiet_forget", store.delete_schedule_txn, user_id)
            return
        await self._directory.run(
            "sferum_quiet_keep",
            store.set_schedule_txn,
            user_id,
            json.dumps(schedule.to_content(), sort_keys=True),
            self._clock.ms(),
        )

    async def run_schedule(self) -> None:
        """One pass of the loop; a call while a pass runs makes that pass go round once more."""
        if self._running:
            self._run_again = True
            return
        self._running = True
        try:
            self._run_again = True
            while self._run_again:
                self._run_again = False
                await self._switch_pushes()
        except Exception:
            logger.exception("synapse_sferum: quiet hours schedule failed")
        finally:
            self._running = False

    async def _switch_pushes(self) -> None:
        now_ms = self._clock.ms()
        now = _moment(now_ms)
        schedules = await self._directory.run("sferum_quiet_schedules", store.all_schedules_txn)
        silenced = await self._directory.run("sferum_quiet_silenced", store.silenced_users_txn)
        next_change: datetime | None = None
        for user_id in sorted(schedules.keys() | silenced):
            try:
                current = await self._status(user_id, schedules.get(user_id), now)
                if current.quiet and user_id not in silenced:
                    await compat.silence_pushes(self._api, user_id)
                    await self._directory.run(
                        "sferum_quiet_silence", store.mark_silenced_txn, user_id, now_ms
                    )
                elif not current.quiet and user_id in silenced:
                    await compat.restore_pushes(self._api, user_id)
                    await self._directory.run(
                        "sferum_quiet_restore", store.unmark_silenced_txn, user_id
                    )
            except Exception:
                # One teacher's failure must not keep the others silenced or ringing.
                logger.exception("synapse_sferum: quiet hours of %s not switched", user_id)
                continue
            if current.until is not None and (next_change is None or current.until < next_change):
                next_change = current.until
        await self._directory.run(
            "sferum_quiet_prune", store.prune_notices_txn, now_ms - NOTICE_RETENTION_MS
        )
        if next_change is not None:
            self._wake_at(_ms(next_change), now_ms)

    async def _status(
        self, user_id: str, schedule_json: str | None, now: datetime
    ) -> quiet.Status:
        """Quiet only with the feature on, a schedule and the role of a school adult."""
        if not self._config.enabled or schedule_json is None:
            return quiet.Status(quiet=False)
        member = await self._directory.get_member(user_id)
        if member is None or not member.is_school_adult:
            return quiet.Status(quiet=False)
        return quiet.status(self._schedule(schedule_json), now)

    def _schedule(self, schedule_json: str) -> quiet.Schedule:
        schedule = quiet.parse_content(json.loads(schedule_json), self._config.default_timezone)
        if schedule is None:
            raise ValueError(f"empty stored schedule {schedule_json!r}")
        return schedule

    def _wake_at(self, at_ms: int, now_ms: int) -> None:
        """Times a pass to a change that comes before the loop's next one.

        A wake-up already pending for that moment or earlier will arm the next one itself.
        """
        delay_ms = at_ms - now_ms + TIMER_SLACK_MS
        if delay_ms > self._config.check_interval_seconds * 1000:
            return
        if self._wake_ms is not None and self._wake_ms <= at_ms:
            return
        self._wake_ms = at_ms
        self._api.delayed_background_call(
            max(delay_ms, 0), self._woken, desc="sferum_quiet_hours_change"
        )

    async def _woken(self) -> None:
        self._wake_ms = None
        await self.run_schedule()

    # -- events: automatic notices, the bot's chat -----------------------------------------

    def needed_state(self, event: EventBase) -> StateNeeds:
        return quiet_state_needs(event, self._bot)

    async def on_new_event(self, event: EventBase, state_events: StateMap[EventBase]) -> None:
        """Picks out what concerns quiet hours; the work runs in the background.

        Synapse awaits this callback before it tells clients about the event, and every
        process sees every event: one instance (the background-tasks one) acts. It is given
        the state `needed_state` asks for: a direct chat's members are read here, so that a
        message in a school space of 1,500 never loads them all.
        """
        try:
            if not self._api.should_run_background_tasks() or event.sender == self._bot:
                return
            if not self._api.is_mine(event.sender):
                return
            if event.type == matrix.MEMBER:
                if event.state_key == self._bot and event.membership == "invite":
                    members = joined(state_events)
                    self._api.run_as_background_process(
                        "sferum_quiet_invite", self._logged, self._answer_invite, event, members
                    )
                return
            if event.type not in MESSAGE_TYPES or event.is_state():
                return
            content = event.content
            if content.get("msgtype") == "m.notice" or content.get(Key.AUTO_REPLY):
                return  # never answer something automatic
            body = content.get("body")
            bot_member = state_events.get((matrix.MEMBER, self._bot))
            if (
                isinstance(body, str)
                and body.lstrip().lower().startswith(quiet_chat.COMMAND_PREFIXES)
                and bot_member is not None
                and bot_member.membership == "join"
            ):
                if is_chat_with_bot(state_events, event.sender, self._bot):
                    self._api.run_as_background_process(
                        "sferum_quiet_command", self._logged, self._command, event
                    )
                return
            create = state_events.get((matrix.CREATE, ""))
            if create is not None and create.content.get(Key.DIRECT):
                state = await self._api.get_room_state(event.room_id, [(matrix.MEMBER, None)])
                others = sorted(joined(state) - {event.sender})
                self._api.run_as_background_process(
                    "sferum_quiet_notice", self._logged, self._auto_reply, event, others
                )
        except Exception:
            logger.exception("synapse_sferum: quiet hours skipped %s", event.event_id)

    async def _logged(self, work: Any, event: EventBase, *args: Any) -> None:
        try:
            await work(event, *args)
        except Exception:
            logger.exception("synapse_sferum: quiet hours failed on %s", event.event_id)

    async def _auto_reply(self, event: EventBase, others: list[str]) -> None:
        sender = await self._directory.get_member(event.sender)
        if sender is None or sender.is_school_adult:
            return  # colleagues and strangers get no automatic notice
        now_ms = self._clock.ms()
        for user_id in others:
            member = await self._directory.get_member(user_id)
            if member is None or not member.is_school_adult:
                continue
            await self._auto_reply_as(member, user_id, event.room_id, now_ms)

    async def _auto_reply_as(
        self, member: Member, user_id: str, room_id: str, now_ms: int
    ) -> None:
        schedule_json = await self._directory.run(
            "sferum_quiet_schedule", store.schedule_txn, user_id
        )
        if schedule_json is None:
            return
        schedule = self._schedule(schedule_json)
        now = _moment(now_ms)
        current = quiet.status(schedule, now)
        if not current.quiet or current.since is None or current.until is None:
            return
        claimed = await self._directory.run(
            "sferum_quiet_claim_notice",
            store.claim_notice_txn,
            room_id,
            user_id,
            _ms(current.since),
            now_ms,
        )
        if not claimed:
            return
        text = quiet.auto_reply_text(
            schedule,
            current.until,
            now,
            teacher=member.has(Role.TEACHER),
            default_timezone=self._config.default_timezone,
        )
        notice = {"msgtype": "m.notice", "body": text, Key.AUTO_REPLY: True}
        await send_event(self._api, user_id, room_id, matrix.MESSAGE, notice)

    async def _command(self, event: EventBase) -> None:
        default_tz = self._config.default_timezone
        try:
            command = quiet_chat.parse_command(str(event.content["body"]))
        except quiet.ScheduleError as e:
            await self._say(event.room_id, quiet_chat.error_text(e, default_tz))
            return
        if command is None:
            return
        member = await self._directory.get_member(event.sender)
        if member is None or not member.is_school_adult:
            await self._say(event.room_id, quiet_chat.STAFF_ONLY_TEXT)
            return
        saved = await self._api.account_data_manager.get_global(
            event.sender, EventType.QUIET_HOURS
        )
        current = None
        try:
            current = quiet.parse_content(saved or {}, default_tz)
        except quiet.ScheduleError as e:
            logger.warning("synapse_sferum: quiet hours of %s unreadable: %s", event.sender, e)
        now = self._clock.now()
        try:
            outcome = quiet_chat.answer(command, current, now, default_tz)
        except quiet.ScheduleError as e:
            await self._say(event.room_id, quiet_chat.error_text(e, default_tz))
            return
        if outcome.store is not None:
            # Through account data, like any client: the callback above takes it from there.
            await self._api.account_data_manager.put_global(
                event.sender, EventType.QUIET_HOURS, outcome.store.to_content()
            )
        await self._say(event.room_id, outcome.reply)

    async def _answer_invite(self, event: EventBase, joined: set[str]) -> None:
        """The bot joins a teacher's or staff member's one-to-one room with it, to take commands.

        Other invites are left alone: the bot's place in provisioned rooms is the provisioner's.
        """
        if joined != {event.sender} or await self._directory.room_key(event.room_id) is not None:
            return
        member = await self._directory.get_member(event.sender)
        if member is None or not member.is_school_adult:
            return
        await self._api.update_room_membership(self._bot, self._bot, event.room_id, "join")
        await self._say(event.room_id, quiet_chat.help_text(self._config.default_timezone))

    async def _say(self, room_id: str, text: str) -> None:
        await say(self._api, self._bot, room_id, text)
