"""The module's view of its database: async methods over the `*_txn` functions, with caches.

Per-user and per-room lookups are cached with Synapse's `@cached`, registered with the ModuleApi
so that `invalidate_cache` reaches every worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from typing import Any, TypeVar

from synapse.module_api import ModuleApi, cached

from sferum_shared import Clock
from sferum_shared.model import ImportReport, Member, RosterImport
from sferum_shared.rooms import RoomKey, RoomKind
from synapse_sferum import compat
from synapse_sferum.compat import module_clock
from synapse_sferum.config import SferumConfig
from synapse_sferum.policy.polls import PollRecord, Vote
from synapse_sferum.roster.merge import DirectorySnapshot
from synapse_sferum.store import accounts, directory, polls, rooms
from synapse_sferum.store.schema import prepare_schema_txn

logger = logging.getLogger(__name__)
T = TypeVar("T")


class DirectoryService:
    def __init__(self, api: ModuleApi, config: SferumConfig, clock: Clock):
        self._api = api
        self._config = config
        self._clock = clock
        # `@cached` reads these two attributes from the instance; `clock` is Synapse's, for the
        # caches' bookkeeping; the date and time the module acts on come from `_clock`.
        self.server_name = api.server_name
        self.clock = module_clock(api.server_name)
        self._schema_ready = False
        for fn in (self._person_for_user, self._member, self._planned_members, self._room_key):
            api.register_cached_function(fn)

    def today(self) -> date:
        """The school's date now (its own midnight, not UTC's): ages and birthdays count by it."""
        return self._clock.today(self._config.zone)

    async def _ensure_schema(self) -> None:
        if not self._schema_ready:
            # Idempotent, so two first calls racing each other do no harm.
            await self._api.run_db_interaction("sferum_schema", prepare_schema_txn)
            self._schema_ready = True

    async def _run(self, desc: str, func: Callable[..., T], *args: Any) -> T:
        await self._ensure_schema()
        return await self._api.run_db_interaction(desc, func, *args)

    async def run(self, desc: str, func: Callable[..., T], *args: Any) -> T:
        """Runs a `*_txn` function of another store module (identity, quiet hours)."""
        return await self._run(desc, func, *args)

    async def run_exclusive(self, desc: str, func: Callable[..., T], *args: Any) -> T:
        """Like `run`, for a `*_txn` that starts with a conditional UPDATE of the row it then
        reads: concurrent calls on that row wait for each other (compat.run_read_committed)."""
        await self._ensure_schema()
        result: T = await compat.run_read_committed(self._api, desc, func, *args)
        return result

    # -- people ----------------------------------------------------------------------------

    # Synapse's `@cached` methods confuse mypy without Synapse's own mypy plugin, so each
    # cached method is private and called, as `Any`, through a typed public one.

    # Sized for a district (about 125,000 people); Synapse's cache factor scales these.
    @cached(max_entries=250_000)
    async def _person_for_user(self, user_id: str) -> str | None:
        if not self._api.is_mine(user_id):
            return None
        return await self._run("sferum_person_for_user", accounts.person_for_user_txn, user_id)

    async def person_for_user(self, user_id: str) -> str | None:
        cached_fn: Any = self._person_for_user
        person_id: str | None = await cached_fn(user_id)
        return person_id

    # Keyed by the day too (ISO text: Synapse streams invalidated keys to workers as text):
    # whether a pupil is a minor changes on a birthday, not on a roster change, so yesterday's
    # entries are simply never asked for again and age out of the LRU.
    @cached(max_entries=250_000)
    async def _member(self, user_id: str, day: str) -> Member | None:
        person_id = await self.person_for_user(user_id)
        if person_id is None:
            return None
        return await self._member_on(person_id, date.fromisoformat(day))

    async def get_member(self, user_id: str) -> Member | None:
        """The rules' view of a linked account; None for unlinked and remote accounts."""
        cached_fn: Any = self._member
        member: Member | None = await cached_fn(user_id, self.today().isoformat())
        return member

    async def member_for_person(self, person_id: str) -> Member | None:
        return await self._member_on(person_id, self.today())

    async def _member_on(self, person_id: str, day: date) -> Member | None:
        return await self._run(
            "sferum_member",
            directory.member_for_person_txn,
            person_id,
            day,
            self._config.rules.adult_age_years,
        )

    async def user_for_person(self, person_id: str) -> str | None:
        return await self._run("sferum_user_for_person", accounts.user_for_person_txn, person_id)

    async def all_links(self) -> dict[str, str]:
        return await self._run("sferum_all_links", accounts.all_links_txn)

    async def link(self, person_id: str, user_id: str, password_hash: str | None) -> None:
        now = self._clock.ms()
        await self._run("sferum_link", accounts.link_txn, person_id, user_id, now, password_hash)
        await self._invalidate_users([user_id])

    async def forget_cached(self, user_ids: Iterable[str]) -> None:
        """After a link made outside `link` (a registration): drop stale lookups everywhere."""
        await self._invalidate_users(user_ids)

    # -- roster ----------------------------------------------------------------------------

    async def snapshot(self) -> DirectorySnapshot:
        return await self._run("sferum_snapshot", directory.load_snapshot_txn)

    async def apply_import(self, change: RosterImport, dry_run: bool) -> ImportReport:
        report = await self._run(
            "sferum_roster_import", directory.apply_import_txn, change, dry_run
        )
        if not dry_run:
            await self._invalidate_users(await self.users_of(report.changed_person_ids))
        return report

    async def users_of(self, person_ids: Iterable[str]) -> list[str]:
        """The accounts linked to these people (people without one are left out)."""
        wanted = set(person_ids)
        if not wanted:
            return []
        links = await self.all_links()
        return sorted(links[p] for p in wanted if p in links)

    async def _invalidate_users(self, user_ids: Iterable[str]) -> None:
        today = self.today().isoformat()
        for user_id in user_ids:
            await self._api.invalidate_cache(self._person_for_user, (user_id,))
            await self._api.invalidate_cache(self._member, (user_id, today))

    # -- rooms -----------------------------------------------------------------------------

    @cached(max_entries=50_000)
    async def _room_key(self, room_id: str) -> RoomKey | None:
        return await self._run("sferum_room_key", rooms.room_key_txn, room_id)

    async def room_key(self, room_id: str) -> RoomKey | None:
        """The kind of a provisioned room, or None for rooms the platform does not own."""
        cached_fn: Any = self._room_key
        key: RoomKey | None = await cached_fn(room_id)
        return key

    async def room_id(self, key: RoomKey) -> str | None:
        return await self._run("sferum_room_id", rooms.room_id_txn, key)

    async def record_room(self, key: RoomKey, room_id: str) -> None:
        await self._run("sferum_record_room", rooms.record_room_txn, key, room_id)
        await self._api.invalidate_cache(self._room_key, (room_id,))

    async def replace_room(self, key: RoomKey, old_room_id: str, new_room_id: str) -> bool:
        replaced = await self._run(
            "sferum_replace_room", rooms.replace_room_txn, key, old_room_id, new_room_id
        )
        for room_id in (old_room_id, new_room_id):
            await self._api.invalidate_cache(self._room_key, (room_id,))
        return bool(replaced)

    async def rooms_of_kind(self, kind: RoomKind) -> dict[str, str]:
        return await self._run("sferum_rooms_of_kind", rooms.rooms_of_kind_txn, kind)

    async def all_rooms(self) -> dict[RoomKey, str]:
        return await self._run("sferum_all_rooms", rooms.all_rooms_txn)

    async def class_ids_of_org(self, org_id: str) -> list[str]:
        return await self._run("sferum_org_classes", rooms.class_ids_of_org_txn, org_id)

    @cached(max_entries=50_000)
    async def _planned_members(self, room_id: str) -> frozenset[str]:
        return await self._run("sferum_planned_members", rooms.planned_members_txn, room_id)

    async def planned_members(self, room_id: str) -> frozenset[str]:
        """Who the last reconcile put in a provisioned room."""
        cached_fn: Any = self._planned_members
        members: frozenset[str] = await cached_fn(room_id)
        return members

    async def set_planned_members(self, room_id: str, members: frozenset[str]) -> None:
        changed = await self._run(
            "sferum_set_planned_members", rooms.set_planned_members_txn, room_id, members
        )
        if changed:
            await self._api.invalidate_cache(self._planned_members, (room_id,))

    # -- polls -------------------------------------------------------------------------------

    async def record_poll(self, record: PollRecord, content: dict[str, Any]) -> None:
        await self._run("sferum_record_poll", polls.record_poll_txn, record, content)

    async def poll(self, event_id: str) -> tuple[PollRecord, dict[str, Any], int | None] | None:
        """A poll the platform saw start in a provisioned room, its content, when it ended."""
        return await self._run("sferum_poll", polls.poll_txn, event_id)

    async def poll_copies(self, origin_id: str) -> list[PollRecord]:
        return await self._run("sferum_poll_copies", polls.copies_txn, origin_id)

    async def record_vote(self, origin_id: str, vote: Vote) -> None:
        await self._run("sferum_record_vote", polls.record_vote_txn, origin_id, vote)

    async def end_poll(self, origin_id: str, ended_ts: int) -> list[Vote] | None:
        return await self._run("sferum_end_poll", polls.end_poll_txn, origin_id, ended_ts)

    # -- mirrored school news --------------------------------------------------------------

    async def claim_mirror(self, source_event_id: str, target_room_id: str) -> bool:
        return await self._run(
            "sferum_claim_mirror", rooms.claim_mirror_txn, source_event_id, target_room_id
        )

    async def set_mirror_event(self, source_event_id: str, room_id: str, event_id: str) -> None:
        await self._run(
            "sferum_set_mirror", rooms.set_mirror_event_txn, source_event_id, room_id, event_id
        )

    async def mirrors_of(self, source_event_id: str) -> dict[str, str]:
        return await self._run("sferum_mirrors_of", rooms.mirrors_of_txn, source_event_id)

    async def copies_among(self, room_id: str, event_ids: Sequence[str]) -> set[str]:
        return await self._run("sferum_copies_among", rooms.copies_among_txn, room_id, event_ids)

    async def class_news_rooms(self, org_id: str) -> list[str]:
        """The news rooms of a school's classes, where its school news is mirrored (and its
        pins follow); an archived class's news room is left as it was (policy/year_end.py)."""
        news = await self.rooms_of_kind(RoomKind.CLASS_NEWS)
        running = await self._run(
            "sferum_running_classes", rooms.running_class_ids_of_org_txn, org_id, self.today()
        )
        return [news[c] for c in running if c in news]
