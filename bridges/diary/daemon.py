"""The bridge process: reads the sources, keeps the roster in the module, posts to the rooms.

`python -m bridges.diary BRIDGE.yaml` (started by `sferumctl start`/`run`). One sync at a time:
at start, every `sync_interval_seconds`, as soon as a source says it changed, and on
`POST /sync` (what `sferumctl diary sync` calls). Its HTTP port also serves /health, /metrics
and the push source.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import signal
import time
import zoneinfo
from pathlib import Path
from typing import Any

import aiohttp
import attrs
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridges.diary import ical_feed, ledger, metrics
from bridges.diary.config import BridgeConfig, SourceConfig
from bridges.diary.db import Database
from bridges.diary.matrix import BridgeClient, MatrixUnavailable
from bridges.diary.miniapp import MiniApp, install_widgets
from bridges.diary.model import DiarySnapshot, SourceProblem
from bridges.diary.plan import plan
from bridges.diary.render import DEFAULT_TEMPLATES, Renderer
from bridges.diary.rooms import RoomDirectory
from bridges.diary.sources.base import Source, SourceUnavailable
from bridges.diary.sync import Syncer
from sferum_shared import SYSTEM_CLOCK, Clock
from sferum_shared.adminapi import AdminApi, Refused, Unexpected, parse_roster_counts
from sferum_shared.http import Unreachable
from sferum_shared.web import send

logger = logging.getLogger("bridges.diary")

ROSTER_HASH = "roster_sha256"


def build_sources(config: BridgeConfig, db: Database, clock: Clock) -> list[Source]:
    return [_source(sc, config, db, clock) for sc in config.sources]


def _source(sc: SourceConfig, config: BridgeConfig, db: Database, clock: Clock) -> Source:
    if sc.kind == "oneroster-csv":
        from bridges.diary.sources.csvsource import OneRosterCsvSource

        return OneRosterCsvSource(
            Path(sc.location), sc.name, clock=clock, timezone=config.timezone
        )
    if sc.kind == "ical":
        from bridges.diary.sources.icalsource import ICalSource

        return ICalSource(Path(sc.location), sc.name, clock=clock, timezone=config.timezone)
    if sc.kind == "oneroster-rest":
        from bridges.diary.sources.rest import OneRosterRestSource

        return OneRosterRestSource(
            sc.location,
            sc.client_id,
            sc.client_secret,
            name=sc.name,
            timeout=sc.timeout_seconds,
            timezone=config.timezone,
        )
    from bridges.diary.sources.push import PushSource

    return PushSource(db, sc.name, clock)


def merge(snapshots: list[DiarySnapshot]) -> DiarySnapshot:
    """One snapshot of all sources; the first source with a roster provides it."""
    return DiarySnapshot(
        marks=tuple(m for s in snapshots for m in s.marks),
        homework=tuple(h for s in snapshots for h in s.homework),
        lessons=tuple(lesson for s in snapshots for lesson in s.lessons),
        problems=tuple(p for s in snapshots for p in s.problems),
        roster_zip=next((s.roster_zip for s in snapshots if s.roster_zip), None),
        complete=all(s.complete for s in snapshots),
    )


class Bridge:
    def __init__(self, config: BridgeConfig, clock: Clock):
        self.config = config
        self.clock = clock
        self.db = Database(config.database, [ledger.LEDGER_SCHEMA, _push_schema()])
        self.client = BridgeClient(config.homeserver_url, config.bot_user_id, config.as_token)
        self.renderer = Renderer(config.templates_dir or DEFAULT_TEMPLATES)
        self.rooms = RoomDirectory(config.admin_api_url, config.admin_api_secret)
        self.syncer = Syncer(self.db, self.client, self.rooms, clock)
        self.sources: list[Source] = []
        self._last_good: dict[str, DiarySnapshot] = {}
        self._last_read: dict[str, float] = {}
        self._problems_logged: set[SourceProblem] = set()
        self._lock = asyncio.Lock()
        self._widget_rooms: set[str] = set()  # rooms given the mini-app's widget this run
        self.last_sync: float | None = None

    async def open(self) -> None:
        await self.db.open()
        self.sources = build_sources(self.config, self.db, self.clock)

    async def close(self) -> None:
        await self.client.close()
        await self.db.close()

    def current_snapshot(self) -> DiarySnapshot:
        """Every source's last good snapshot, merged: what the mini-app and the feeds show."""
        return merge(list(self._last_good.values()))

    async def _read(self) -> DiarySnapshot:
        snapshots = []
        for source in self.sources:
            try:
                snapshot = await source.snapshot()
            except SourceUnavailable as e:
                logger.error("diary: source %s cannot be read: %s", source.name, e)
                metrics.PROBLEMS.labels(source.name, "fetch").inc()
                last = self._last_good.get(source.name, DiarySnapshot())
                snapshots.append(attrs.evolve(last, problems=(), complete=False))
                continue
            self._last_good[source.name] = snapshot
            self._last_read[source.name] = time.monotonic()
            snapshots.append(snapshot)
        for name, moment in self._last_read.items():
            metrics.SOURCE_LAG.labels(name).set(time.monotonic() - moment)
        merged = merge(snapshots)
        for problem in merged.problems:
            if problem not in self._problems_logged:
                self._problems_logged.add(problem)
                logger.error(
                    "diary: %s: %s: %s (skipped)", problem.source, problem.where, problem.message
                )
                metrics.PROBLEMS.labels(problem.source, problem.kind).inc()
        for kind, items in (
            ("mark", merged.marks),
            ("homework", merged.homework),
            ("lesson", merged.lessons),
        ):
            metrics.ITEMS_SEEN.labels(kind).inc(len(items))
        return merged

    async def sync_once(self) -> dict[str, Any]:
        async with self._lock:
            snapshot = await self._read()
            roster = await self._sync_roster(snapshot.roster_zip)
            now = self.clock.now(zoneinfo.ZoneInfo(self.config.timezone))
            posts = plan(snapshot, self.renderer, now, self.config.digest_time)
            try:
                report = await self.syncer.apply(posts, snapshot.complete)
            except MatrixUnavailable as e:
                metrics.SYNCS.labels("homeserver_unavailable").inc()
                logger.error("diary: the homeserver is unavailable (%s); retrying later", e)
                raise
            finally:  # a failed run may leave intents unfinished: that is the lag to see
                await self._measure_ledger()
            if self.config.public_url:
                await install_widgets(
                    self.client,
                    self.rooms,
                    self.config.public_url,
                    {h.class_id for h in snapshot.homework}
                    | {lesson.class_id for lesson in snapshot.lessons}
                    | {m.class_id for m in snapshot.marks},
                    {m.student_id for m in snapshot.marks},
                    self._widget_rooms,
                )
            metrics.SYNCS.labels("ok").inc()
            self.last_sync = self.clock.seconds()
            metrics.LAST_SYNC.set(self.last_sync)
            result = {
                **report.to_json(),
                "items": len(posts),
                "problems": len(snapshot.problems),
                "roster": roster,
                "complete": snapshot.complete,
            }
            logger.info("diary: sync done: %s", result)
            return result

    async def _measure_ledger(self) -> None:
        unfinished, oldest = await self.db.run(ledger.unfinished_txn)
        count, age = metrics.ledger_lag(unfinished, oldest, self.clock.ms())
        metrics.LEDGER_UNFINISHED.set(count)
        metrics.LEDGER_OLDEST_UNFINISHED.set(age)

    async def _sync_roster(self, roster_zip: bytes | None) -> str:
        """Sends the roster to the module when it changed: the SIS stays the one source."""
        if roster_zip is None:
            return "none"
        digest = hashlib.sha256(roster_zip).hexdigest()
        if await self.db.run(ledger.get_meta_txn, ROSTER_HASH) == digest:
            return "unchanged"
        api = AdminApi(self.config.admin_api_url, self.config.admin_api_secret)
        upload = api.import_roster(roster_zip, name="diary-roster.zip", dry_run=False)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(300)) as http:
                parse_roster_counts(await send(http, upload))
        except Unreachable as e:
            logger.error("diary: roster upload failed: %s", e)
            return "failed"
        except (Refused, Unexpected) as e:
            logger.error("diary: the module refused the roster: %s", e)
            metrics.PROBLEMS.labels("roster", "refused").inc()
            return "refused"
        await self.db.run(ledger.set_meta_txn, ROSTER_HASH, digest)
        return "imported"

    async def run_forever(self, stop: asyncio.Event) -> None:
        next_full = 0.0
        while not stop.is_set():
            due = time.monotonic() >= next_full
            changed = False
            if not due:
                for source in self.sources:
                    changed = changed or await source.changed()
            if due or changed:
                try:
                    await self.sync_once()
                except MatrixUnavailable:
                    pass
                except Exception:
                    metrics.SYNCS.labels("error").inc()
                    logger.exception("diary: sync failed")
                next_full = time.monotonic() + self.config.sync_interval_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)

    # -- HTTP ----------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/sync", self._sync_request)
        app.add_routes(
            MiniApp(self.config, self.current_snapshot, self.clock, self.rooms).routes()
        )
        app.add_routes(
            ical_feed.routes(
                self.current_snapshot, self.config.ical_secret, self.config.timezone, self.clock
            )
        )
        for source in self.sources:
            routes = getattr(source, "routes", None)
            if routes is not None:
                app.add_routes(routes(self.config.push_secret))
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "last_sync": self.last_sync})

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(metrics.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _sync_request(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        secret = self.config.control_secret
        if not secret or not hmac.compare_digest(token.encode(), secret.encode()):
            return web.json_response({"error": "a valid control_secret is required"}, status=401)
        try:
            return web.json_response(await self.sync_once())
        except MatrixUnavailable as e:
            return web.json_response({"error": f"the homeserver is unavailable: {e}"}, status=503)


def _push_schema() -> tuple[str, ...]:
    from bridges.diary.sources.push import PUSH_SCHEMA

    return tuple(PUSH_SCHEMA)


async def serve(config: BridgeConfig, clock: Clock = SYSTEM_CLOCK) -> None:
    bridge = Bridge(config, clock)
    await bridge.open()
    runner = web.AppRunner(bridge.web_app())
    await runner.setup()
    await web.TCPSite(runner, config.http_bind, config.http_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logger.info("diary: bridge up on %s:%s", config.http_bind, config.http_port)
    try:
        await bridge.run_forever(stop)
    finally:
        await runner.cleanup()
        await bridge.close()
