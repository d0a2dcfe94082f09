"""Counts the votes of polls in provisioned rooms and posts each result when the poll ends
(docs/rooms-and-rules.md «Polls»).

Clients that show polls count for themselves, room by room; the platform counts a school news
poll's votes together with those on its copies in every class's news, and writes the result as
a message that every client shows, the ones without polls too (bots, matrix-commander).
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.events import EventBase
from synapse.module_api import ModuleApi
from synapse.types import StateMap

from sferum_shared import matrix
from sferum_shared.vocabulary import Key
from synapse_sferum.policy import polls
from synapse_sferum.sending import send_event
from synapse_sferum.service import DirectoryService

logger = logging.getLogger(__name__)

POLL_EVENTS = frozenset({matrix.POLL_START, matrix.POLL_RESPONSE, matrix.POLL_END})


class PollCounter:
    def __init__(self, api: ModuleApi, directory: DirectoryService, bot_user_id: str):
        self._api = api
        self._directory = directory
        self._bot = bot_user_id

    async def on_new_event(self, event: EventBase, state_events: StateMap[EventBase]) -> None:
        # Every process sees new events; only the background-tasks instance counts.
        if event.type not in POLL_EVENTS or event.is_state():
            return
        if not self._api.should_run_background_tasks():
            return
        try:
            if event.type == matrix.POLL_START:
                await self._started(event)
            elif event.type == matrix.POLL_RESPONSE:
                await self._voted(event)
            else:
                await self._ended(event)
        except Exception:
            logger.exception("synapse_sferum: poll event %s not counted", event.event_id)

    async def _started(self, event: EventBase) -> None:
        relation = event.content.get("m.relates_to")
        if isinstance(relation, dict) and relation.get("rel_type") == "m.replace":
            return  # an edit of a poll: the original's row stands
        if polls.parse_poll(event.content) is None:
            return
        if await self._directory.room_key(event.room_id) is None:
            return  # users' own rooms: their clients count
        origin_id, creator = event.event_id, event.sender
        mirror_of = event.content.get(Key.MIRROR_OF)
        if event.sender == self._bot and isinstance(mirror_of, dict):
            origin_id, creator = str(mirror_of["event_id"]), str(mirror_of["sender"])
        record = polls.PollRecord(event.event_id, event.room_id, origin_id, creator)
        await self._directory.record_poll(record, dict(event.content))

    async def _voted(self, event: EventBase) -> None:
        target = polls.related_event(event.content)
        found = await self._directory.poll(target) if target else None
        if found is None:
            return
        record, _, _ = found
        if record.room_id != event.room_id:
            return  # a vote on a poll of a room the voter may not even see
        vote = polls.Vote(
            voter=event.sender,
            answer_ids=polls.response_answers(event.content),
            ts=event.origin_server_ts,
            event_id=event.event_id,
        )
        await self._directory.record_vote(record.origin_id, vote)

    async def _ended(self, event: EventBase) -> None:
        """The first end of a poll (the rules let only valid ones in) ends it everywhere."""
        target = polls.related_event(event.content)
        found = await self._directory.poll(target) if target else None
        if found is None:
            return
        record, content, _ = found
        if record.is_copy or record.room_id != event.room_id:
            # The platform closing a copy after the original (counted already), or an "end"
            # sent in another room than the poll's, which ends nothing.
            return
        poll = polls.parse_poll(content)
        votes = await self._directory.end_poll(record.origin_id, event.origin_server_ts)
        if poll is None or votes is None:
            return
        result = polls.tally(poll, votes)
        body, html = polls.result_text(poll, result)
        # Synapse waits for this callback before it tells clients about the end: post the
        # results, one room after another, in the background.
        self._api.run_as_background_process(
            "sferum_poll_result", self._post_results, record.origin_id, body, html, result
        )

    async def _post_results(
        self, origin_id: str, body: str, html: str, result: polls.Tally
    ) -> None:
        for copy in await self._directory.poll_copies(origin_id):
            content: dict[str, Any] = {
                "msgtype": "m.notice",
                "body": body,
                "format": matrix.HTML_FORMAT,
                "formatted_body": html,
                "m.relates_to": {"m.in_reply_to": {"event_id": copy.event_id}},
                Key.POLL_RESULT: {
                    "poll": origin_id,
                    "answers": dict(result.counts),
                    "voters": result.voters,
                },
            }
            try:
                await send_event(self._api, self._bot, copy.room_id, matrix.MESSAGE, content)
            except Exception:
                logger.exception(
                    "synapse_sferum: result of poll %s not posted in %s", origin_id, copy.room_id
                )
