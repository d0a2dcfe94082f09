"""The push source: a diary POSTs its changes, signed with HMAC; the bridge stores them durably.

`POST /push`, headers `X-Diary-Timestamp: <unix seconds>` and
`X-Diary-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>`, body:

    {"id": "<unique request id>",
     "marks":    [{"id", "student_id", "class_id", "work", "value", "work_date",
                   "subject"?, "comment"?, "category"?}],
     "homework": [{"id", "class_id", "text", "due", "subject"?, "assigned"?}],
     "lessons":  [{"id", "class_id", "subject", "start", "end",
                   "room"?, "teacher"?, "status"?, "note"?}],
     "deleted":  ["mark:<id>", "homework:<id>", "lesson:<id>"]}

The item fields mirror `bridges.diary.model` (`id` is `source_id`); `?` marks optional ones;
all values are strings: dates `2026-11-23`, times ISO 8601 with an offset
(`2026-11-23T08:30:00+03:00`), lesson status `normal|replaced|cancelled`. Unknown fields are
refused, so a misspelt field is not silently lost. An item replaces an earlier one with the
same key; "deleted" removes keys (applied before the request's items).

Answers:
- 401: no or a bad signature, or a timestamp more than 300 s off (the signature covers the
  timestamp, so an old request cannot be re-dated); nothing is read.
- 409: the request id was accepted before (a replay); nothing is stored.
- 400 `{"where", "error"}`: the body as a whole is malformed (no JSON object, no id, a list
  that is no list, unknown top-level fields); nothing is stored and the id is not used up,
  so the diary may fix the request and send it again with the same id.
- 200 `{"accepted", "deleted", "problems": [{"where", "error"}]}`: the request is stored in one
  transaction. A malformed item (`marks[2].work_date`) is a problem: it is skipped, every
  valid item of the same request is still stored, and the id is used up (send the fixed item
  with a new request id). One bad item must not hold back a class's other marks.

Every refusal and problem is logged and counted in `diary_source_problems` (kinds
`signature`, `replay`, `invalid`). Request ids are kept for three times the timestamp
tolerance: an older replay is refused by its timestamp anyway.

Checking and parsing are plain functions; the aiohttp handler and the database are thin.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

import attrs
from aiohttp import web

from bridges.diary import metrics
from bridges.diary.db import Cursor, Database
from bridges.diary.model import DiarySnapshot, Homework, Lesson, LessonStatus, Mark, SourceProblem
from sferum_shared import Clock

logger = logging.getLogger(__name__)

PUSH_SCHEMA: tuple[str, ...] = (
    "CREATE TABLE diary_push_items ("
    " key TEXT PRIMARY KEY, kind TEXT NOT NULL, json TEXT NOT NULL, received_ts BIGINT NOT NULL)",
    "CREATE TABLE diary_push_requests (request_id TEXT PRIMARY KEY, received_ts BIGINT NOT NULL)",
)
PATH = "/push"
TIMESTAMP_HEADER = "X-Diary-Timestamp"
SIGNATURE_HEADER = "X-Diary-Signature"
TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 8 * 1024 * 1024  # a whole school's term of marks fits many times over
MAX_ID_LENGTH = 200
ITEM_LISTS = ("marks", "homework", "lessons")
KIND_OF_LIST = {"marks": "mark", "homework": "homework", "lessons": "lesson"}

Item = Mark | Homework | Lesson


# -- signatures --------------------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Diary-Signature` value for a body sent at `timestamp` (what a diary computes)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def check_signature(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> str | None:
    """Why the request is refused (None: it is genuine and fresh). Constant-time compare."""
    if not secret:
        return "the push source has no push_secret configured"
    if not timestamp or not signature:
        return f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required"
    if not timestamp.isascii() or not timestamp.isdigit():
        return f"{TIMESTAMP_HEADER} {timestamp[:40]!r} is not unix seconds"
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        return f"{SIGNATURE_HEADER} does not match the body (wrong secret or altered body)"
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return (
            f"{TIMESTAMP_HEADER} is {int(now) - int(timestamp)} s off the bridge's clock "
            f"(at most {TOLERANCE_SECONDS} s allowed)"
        )
    return None


# -- items ↔ JSON -------------------------------------------------------------------------------


class BadValue(ValueError):
    """A field of an item that cannot be read; its `field` says which."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _day(value: str) -> date:
    return date.fromisoformat(value)


def _moment(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("has no UTC offset, such as +03:00")
    return moment


def _status(value: str) -> LessonStatus:
    return LessonStatus(value)


@attrs.frozen
class _Field:
    name: str  # in JSON; `id` is the model's `source_id`
    required: bool = True
    parse: Callable[[str], Any] = str
    nonempty: bool = True


_FIELDS: Mapping[str, tuple[_Field, ...]] = {
    "mark": (
        _Field("id"),
        _Field("student_id"),
        _Field("class_id"),
        _Field("work"),
        _Field("value"),
        _Field("work_date", parse=_day),
        _Field("subject", required=False, nonempty=False),
        _Field("comment", required=False, nonempty=False),
        _Field("category", required=False, nonempty=False),
    ),
    "homework": (
        _Field("id"),
        _Field("class_id"),
        _Field("text"),
        _Field("due", parse=_day),
        _Field("subject", required=False, nonempty=False),
        _Field("assigned", required=False, parse=_day),
    ),
    "lesson": (
        _Field("id"),
        _Field("class_id"),
        _Field("subject"),
        _Field("start", parse=_moment),
        _Field("end", parse=_moment),
        _Field("room", required=False, nonempty=False),
        _Field("teacher", required=False, nonempty=False),
        _Field("status", required=False, parse=_status),
        _Field("note", required=False, nonempty=False),
    ),
}
_MODELS: Mapping[str, type[Item]] = {"mark": Mark, "homework": Homework, "lesson": Lesson}


def item_from_json(kind: str, obj: Any) -> Item:
    """An item of `kind` from its JSON object; `BadValue` names the bad field."""
    if not isinstance(obj, dict):
        raise BadValue("", f"is {_json_type(obj)}, not an object")
    fields = _FIELDS[kind]
    unknown = sorted(set(obj) - {f.name for f in fields})
    if unknown:
        raise BadValue(unknown[0], f"is not a {kind} field (fields: "
                                   f"{', '.join(f.name for f in fields)})")  # fmt: skip
    values: dict[str, Any] = {}
    for field in fields:
        value = obj.get(field.name)
        if value is None:
            if field.required:
                raise BadValue(field.name, "is required")
            if field.parse is str:  # an optional text is empty; other fields keep the default
                values[field.name] = ""
            continue
        if not isinstance(value, str):
            raise BadValue(field.name, f"is {_json_type(value)}, not a string")
        if field.nonempty and not value.strip():
            raise BadValue(field.name, "is empty")
        try:
            parsed = field.parse(value)
        except ValueError as err:
            raise BadValue(field.name, f"{value[:60]!r} {_reason(field, err)}") from None
        values["source_id" if field.name == "id" else field.name] = parsed
    if kind == "lesson" and values["end"] <= values["start"]:
        raise BadValue("end", "is not after start")
    return _MODELS[kind](**values)


def _reason(field: _Field, err: ValueError) -> str:
    if field.parse is _day:
        return "is not a date such as 2026-11-23"
    if field.parse is _moment:
        detail = str(err) if "offset" in str(err) else "is not a time such as"
        return f"{detail} (e.g. 2026-11-23T08:30:00+03:00)"
    if field.parse is _status:
        return f"is not one of {', '.join(s.value for s in LessonStatus)}"
    return f"is not valid ({err})"


def _json_type(value: Any) -> str:
    """What a JSON value is, with its article: "an object", "a list", "null"."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def item_to_json(item: Item) -> dict[str, str]:
    """The item as the push JSON (what is stored, and what `item_from_json` reads back)."""
    kind = item.key.partition(":")[0]
    out: dict[str, str] = {}
    for field in _FIELDS[kind]:
        value = getattr(item, "source_id" if field.name == "id" else field.name)
        if value is None:
            continue
        if isinstance(value, date):  # datetime too
            out[field.name] = value.isoformat()
        elif isinstance(value, LessonStatus):
            out[field.name] = value.value
        else:
            out[field.name] = str(value)
    return out


# -- requests -----------------------------------------------------------------------------------


class MalformedPush(ValueError):
    """The body as a whole cannot be read: 400, nothing stored."""

    def __init__(self, where: str, message: str):
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@attrs.frozen
class PushRequest:
    request_id: str
    items: tuple[Item, ...]  # valid items, later ones replacing earlier ones of the same key
    deleted: tuple[str, ...]  # item keys
    problems: tuple[tuple[str, str], ...]  # (where, what) of each skipped entry


def parse_push(body: bytes) -> PushRequest:
    """The request in a push body; `MalformedPush` if the body as a whole is bad."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedPush("body", f"is not JSON ({err})") from None
    if not isinstance(obj, dict):
        raise MalformedPush("body", f"is {_json_type(obj)} in JSON, not an object")
    unknown = sorted(set(obj) - {"id", "deleted", *ITEM_LISTS})
    if unknown:
        raise MalformedPush(unknown[0], "is not a push field (id, marks, homework, lessons, "
                                        "deleted)")  # fmt: skip
    request_id = obj.get("id")
    if not isinstance(request_id, str) or not request_id.strip():
        raise MalformedPush("id", "a unique request id (a non-empty string) is required")
    if len(request_id) > MAX_ID_LENGTH:
        raise MalformedPush("id", f"is longer than {MAX_ID_LENGTH} characters")
    for name in (*ITEM_LISTS, "deleted"):
        if not isinstance(obj.get(name, []), list):
            raise MalformedPush(name, f"is {_json_type(obj[name])}, not a list")
    problems: list[tuple[str, str]] = []
    deleted: list[str] = []
    for index, key in enumerate(obj.get("deleted", [])):
        kind, _, source_id = key.partition(":") if isinstance(key, str) else ("", "", "")
        if kind not in _FIELDS or not source_id:
            problems.append((f"deleted[{index}]", f"{json.dumps(key, ensure_ascii=False)[:80]} "
                                                  "is not mark:<id>, homework:<id> or "
                                                  "lesson:<id>"))  # fmt: skip
            continue
        deleted.append(key)
    items: dict[str, Item] = {}
    for name in ITEM_LISTS:
        for index, entry in enumerate(obj.get(name, [])):
            try:
                item = item_from_json(KIND_OF_LIST[name], entry)
            except BadValue as err:
                where = f"{name}[{index}]" + (f".{err.field}" if err.field else "")
                problems.append((where, str(err)))
                continue
            items.pop(item.key, None)  # the last of a key wins, in its own position
            items[item.key] = item
    return PushRequest(request_id, tuple(items.values()), tuple(deleted), tuple(problems))


# -- storage --------------------------------------------------------------------------------------


@attrs.frozen
class Stored:
    accepted: int
    deleted: int


class PushStore:
    """The pushed items and the request ids seen, in the bridge's database."""

    def __init__(self, db: Database, clock: Clock):
        self._db = db
        self._clock = clock

    async def accept(self, request: PushRequest) -> Stored | None:
        """Stores the request in one transaction; None if its id was seen before (a replay)."""
        return await self._db.run(_accept, request, self._clock.ms())

    async def items(self) -> list[tuple[str, str, str]]:
        """(key, kind, json) of every stored item."""
        return await self._db.run(_items)

    async def version(self) -> tuple[Any, ...]:
        """Changes with every accepted request."""
        return await self._db.run(_version)


def _accept(cur: Cursor, request: PushRequest, now_ms: int) -> Stored | None:
    cur.execute(
        "DELETE FROM diary_push_requests WHERE received_ts < ?",
        (now_ms - 3 * TOLERANCE_SECONDS * 1000,),
    )
    cur.execute("SELECT 1 FROM diary_push_requests WHERE request_id = ?", (request.request_id,))
    if cur.fetchone() is not None:
        return None
    cur.execute(
        "INSERT INTO diary_push_requests (request_id, received_ts) VALUES (?, ?)",
        (request.request_id, now_ms),
    )
    deleted = 0
    for key in request.deleted:
        cur.execute("DELETE FROM diary_push_items WHERE key = ?", (key,))
        deleted += max(cur.rowcount, 0)
    for item in request.items:
        cur.execute(
            "INSERT INTO diary_push_items (key, kind, json, received_ts) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET kind = EXCLUDED.kind, json = EXCLUDED.json,"
            " received_ts = EXCLUDED.received_ts",
            (
                item.key,
                item.key.partition(":")[0],
                json.dumps(item_to_json(item), ensure_ascii=False, sort_keys=True),
                now_ms,
            ),
        )
    return Stored(len(request.items), deleted)


def _items(cur: Cursor) -> list[tuple[str, str, str]]:
    cur.execute("SELECT key, kind, json FROM diary_push_items ORDER BY key")
    return [(str(k), str(kind), str(j)) for k, kind, j in cur.fetchall()]


def _version(cur: Cursor) -> tuple[Any, ...]:
    cur.execute("SELECT COUNT(*), MAX(received_ts) FROM diary_push_requests")
    row = cur.fetchone()
    return tuple(row) if row is not None else ()


# -- HTTP -----------------------------------------------------------------------------------------


def push_routes(
    store: PushStore,
    secret: str,
    name: str,
    clock: Clock,
) -> list[web.RouteDef]:
    """`POST /push` for the bridge's web app."""

    def refuse(status: int, kind: str, where: str, message: str) -> web.Response:
        logger.error("diary: %s: push %s refused (%d): %s", name, where, status, message)
        metrics.PROBLEMS.labels(name, kind).inc()
        return web.json_response({"where": where, "error": message}, status=status)

    async def handler(request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return refuse(413, "invalid", "body", f"is larger than {MAX_BODY_BYTES} bytes")
        body = await request.read()
        reason = check_signature(
            secret,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            body,
            clock.seconds(),
        )
        if reason is not None:
            return refuse(401, "signature", request.remote or "request", reason)
        try:
            push = parse_push(body)
        except MalformedPush as err:
            return refuse(400, "invalid", err.where, err.message)
        stored = await store.accept(push)
        if stored is None:
            return refuse(409, "replay", push.request_id, "this request id was accepted before")
        for where, message in push.problems:
            logger.error("diary: %s: push %s: %s: %s (skipped)", name, push.request_id, where,
                         message)  # fmt: skip
            metrics.PROBLEMS.labels(name, "invalid").inc()
        logger.info(
            "diary: %s: push %s: %d stored, %d deleted, %d skipped",
            *(name, push.request_id, stored.accepted, stored.deleted, len(push.problems)),
        )
        return web.json_response(
            {
                "id": push.request_id,
                "accepted": stored.accepted,
                "deleted": stored.deleted,
                "problems": [{"where": w, "error": m} for w, m in push.problems],
            }
        )

    return [web.post(PATH, handler)]


# -- the source -----------------------------------------------------------------------------------


class PushSource:
    """`push`: everything the diary pushed and did not delete, as a complete snapshot."""

    def __init__(self, db: Database, name: str, clock: Clock):
        self._store = PushStore(db, clock)
        self._name = name
        self._clock = clock
        self._seen: tuple[Any, ...] | None = None

    @property
    def name(self) -> str:
        return self._name

    def routes(self, secret: str) -> list[web.RouteDef]:
        """The push endpoint, for the bridge's web app."""
        return push_routes(self._store, secret, self._name, self._clock)

    async def changed(self) -> bool:
        return await self._store.version() != self._seen

    async def snapshot(self) -> DiarySnapshot:
        seen = await self._store.version()  # first: a push while we read shows up next time
        found: dict[str, list[Any]] = {"mark": [], "homework": [], "lesson": []}
        problems: list[SourceProblem] = []
        for key, kind, text in await self._store.items():
            try:
                found[kind].append(item_from_json(kind, json.loads(text)))
            except (KeyError, ValueError) as err:  # only if the table was edited by hand
                problems.append(SourceProblem(self._name, f"diary_push_items {key}", str(err)))
        self._seen = seen
        return DiarySnapshot(
            marks=tuple(found["mark"]),
            homework=tuple(found["homework"]),
            lessons=tuple(found["lesson"]),
            problems=tuple(problems),
            complete=True,
        )
