"""Applies a plan to the rooms through the ledger: each item posted once, edited, redacted.

Sequential on purpose: one item's intent is written, sent and completed before the next, so a
crash leaves at most one unfinished intent per item, which the next run finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs

from bridges.diary import ledger, metrics
from bridges.diary.db import Database
from bridges.diary.ledger import EDITING, REDACTED, REDACTING, SENDING, SENT, Entry
from bridges.diary.matrix import BridgeClient, MatrixRefused, edit_content, message_content
from bridges.diary.plan import DELETABLE_KINDS, Post
from bridges.diary.rooms import RoomDirectory
from sferum_shared import Clock

logger = logging.getLogger(__name__)


@attrs.define
class SyncReport:
    posted: int = 0
    edited: int = 0
    redacted: int = 0
    unchanged: int = 0
    deferred: int = 0  # no room yet (the pupil has no account and no guardian has one)
    failed: int = 0

    def to_json(self) -> dict[str, int]:
        return attrs.asdict(self)


class Syncer:
    def __init__(
        self,
        db: Database,
        client: BridgeClient,
        rooms: RoomDirectory,
        clock: Clock,
    ):
        self._db = db
        self._client = client
        self._rooms = rooms
        self._clock = clock

    async def apply(self, posts: Sequence[Post], complete: bool) -> SyncReport:
        """Brings the rooms to `posts`; with `complete`, deleted marks and homework go too."""
        report = SyncReport()
        entries = await self._db.run(ledger.all_entries_txn)
        wanted = {post.key for post in posts}
        for post in posts:
            try:
                await self._apply_one(post, entries.get(post.key), report)
            except MatrixRefused as e:
                report.failed += 1
                metrics.FAILED.labels(post.kind).inc()
                logger.error("diary: %s: %s", post.key, e)
        for entry in entries.values():
            if entry.item_key in wanted:
                continue
            try:
                await self._settle_unwanted(entry, complete, report)
            except MatrixRefused as e:
                report.failed += 1
                logger.error("diary: %s: %s", entry.item_key, e)
        return report

    async def _apply_one(self, post: Post, entry: Entry | None, report: SyncReport) -> None:
        room_id = await self._rooms.resolve(post.room_alias)
        if room_id is None:
            report.deferred += 1
            return
        if entry is not None and entry.state == REDACTED:
            # The item is back at the source: a new message, as if never seen.
            await self._db.run(ledger.drop_txn, post.key)
            entry = None
        if entry is not None and entry.room_id != room_id and entry.event_id is not None:
            # Its room changed (a pupil's diary was recreated): take it back, post anew.
            await self._redact(entry, report)
            await self._db.run(ledger.drop_txn, post.key)
            entry = None
        if entry is None:
            await self._post_new(post, room_id, report)
        elif entry.state == SENDING:
            found = await self._client.find_sent(room_id, post.key, entry.pending_hash or "")
            if found is not None:
                await self._db.run(ledger.finish_txn, post.key, found, self._clock.ms())
                entry = attrs.evolve(entry, event_id=found, content_hash=entry.pending_hash)
                await self._edit_if_changed(post, entry, report)
            elif entry.pending_hash == post.content_hash:
                await self._send_new(post, room_id, report)
            else:
                await self._db.run(ledger.forget_txn, post.key)
                await self._post_new(post, room_id, report)
        elif entry.state == EDITING:
            assert entry.event_id is not None
            pending = entry.pending_hash or ""
            if await self._client.find_sent(room_id, post.key, pending) is not None:
                await self._db.run(ledger.finish_txn, post.key, None, self._clock.ms())
                entry = attrs.evolve(entry, content_hash=pending, state=SENT)
            else:
                entry = attrs.evolve(entry, state=SENT)
            await self._edit_if_changed(post, entry, report, resend_hash=pending)
        elif entry.state == REDACTING:
            await self._redact(entry, report)
            await self._db.run(ledger.drop_txn, post.key)
            await self._post_new(post, room_id, report)
        else:
            await self._edit_if_changed(post, entry, report)

    async def _post_new(self, post: Post, room_id: str, report: SyncReport) -> None:
        """Writes the intent, then sends: a crash in between leaves a SENDING row to finish."""
        await self._db.run(
            ledger.begin_send_txn,
            post.key,
            post.kind,
            room_id,
            post.content_hash,
            self._clock.ms(),
        )
        await self._send_new(post, room_id, report)

    async def _send_new(self, post: Post, room_id: str, report: SyncReport) -> None:
        txn = ledger.txn_id(post.key, post.content_hash)
        try:
            event_id = await self._client.send(room_id, message_content(post), txn)
        except MatrixRefused:
            await self._db.run(ledger.forget_txn, post.key)
            raise
        await self._db.run(ledger.finish_txn, post.key, event_id, self._clock.ms())
        report.posted += 1
        metrics.POSTED.labels(post.kind).inc()

    async def _edit_if_changed(
        self, post: Post, entry: Entry, report: SyncReport, resend_hash: str | None = None
    ) -> None:
        if entry.content_hash == post.content_hash:
            report.unchanged += 1
            return
        assert entry.event_id is not None
        if resend_hash != post.content_hash:
            await self._db.run(
                ledger.begin_edit_txn, post.key, post.content_hash, self._clock.ms()
            )
        txn = ledger.txn_id(post.key, post.content_hash, "edit")
        await self._client.send(entry.room_id, edit_content(post, entry.event_id), txn)
        await self._db.run(ledger.finish_txn, post.key, None, self._clock.ms())
        report.edited += 1
        metrics.EDITED.labels(post.kind).inc()

    async def _settle_unwanted(self, entry: Entry, complete: bool, report: SyncReport) -> None:
        """An item no longer in the plan: finish a crashed intent; redact if deleted."""
        if entry.state == SENDING:
            found = await self._client.find_sent(
                entry.room_id, entry.item_key, entry.pending_hash or ""
            )
            if found is None:
                await self._db.run(ledger.forget_txn, entry.item_key)
                return
            await self._db.run(ledger.finish_txn, entry.item_key, found, self._clock.ms())
            entry = attrs.evolve(entry, event_id=found, state=SENT)
        if entry.state == EDITING:
            await self._db.run(ledger.mark_txn, entry.item_key, SENT, self._clock.ms())
            entry = attrs.evolve(entry, state=SENT)
        deletable = entry.kind in DELETABLE_KINDS and complete
        if entry.state == REDACTING or (entry.state == SENT and deletable):
            await self._redact(entry, report)

    async def _redact(self, entry: Entry, report: SyncReport) -> None:
        assert entry.event_id is not None
        await self._db.run(ledger.mark_txn, entry.item_key, REDACTING, self._clock.ms())
        txn = ledger.txn_id(entry.item_key, entry.event_id, "redact")
        await self._client.redact(entry.room_id, entry.event_id, txn)
        await self._db.run(ledger.mark_txn, entry.item_key, REDACTED, self._clock.ms())
        report.redacted += 1
        metrics.REDACTED.labels(entry.kind).inc()
