"""The platform's admin API as the module serves it at `PREFIX`: requests and answers, no I/O.

The module is the server (`synapse_sferum.admin_api`); sferumctl, the diary bridge and the SFU
are its clients, each with its own transport (`sferum_shared.http`). Every client builds its
requests with `AdminApi` and reads the answers with the `parse_*` functions here, so the wire
names are spelled once and tested without a server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import attrs

from sferum_shared.http import Request, Response, json_request
from sferum_shared.ids import RoomId, UserId
from sferum_shared.vocabulary import Key

PREFIX = "/_synapse/client/sferum/admin/v1"
PROBLEMS_KEY = Key.PROBLEMS  # the list of {file, line, column, message} of a bad roster
ROSTER_NAME_PARAM = "name"  # query parameter: the uploaded file's name, used in problems


@attrs.frozen
class AdminApi:
    """Builds the admin API's requests for one server: `url` is the API's root (with PREFIX)."""

    url: str
    secret: str

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def _post(self, path: str, body: Any, **query: str) -> Request:
        url = f"{self.url}/{path}"
        url = f"{url}?{urlencode(query)}" if query else url
        return json_request("POST", url, body, self._auth)

    def import_roster(self, zip_bytes: bytes, *, name: str, dry_run: bool) -> Request:
        query = {ROSTER_NAME_PARAM: name}
        if dry_run:
            query["dry_run"] = "true"
        headers = {**self._auth, "Content-Type": "application/zip"}
        return Request("POST", f"{self.url}/roster?{urlencode(query)}", headers, zip_bytes)

    def issue_link_codes(
        self, *, persons: Sequence[str], class_id: str | None, expires_days: int | None
    ) -> Request:
        body: dict[str, Any] = {"class": class_id} if class_id else {"persons": list(persons)}
        if expires_days is not None:
            body["expires_days"] = expires_days
        return self._post("link-codes", body)

    def reconcile(self) -> Request:
        """Starts a run (or joins the one waiting to start); answered at once with its status."""
        return self._post("reconcile", {})

    def reconcile_status(self, run: int) -> Request:
        """Where run `run` is; its report once it has finished."""
        return self._post("reconcile-status", {"run": run})

    def issue_accounts(
        self, *, persons: Sequence[str] = (), class_id: str | None = None
    ) -> Request:
        selection = {"class": class_id} if class_id is not None else {"persons": list(persons)}
        return self._post("accounts", selection)

    def reset_accounts(self, *, persons: Sequence[str]) -> Request:
        """New cards for these people's accounts (answered like `issue_accounts`)."""
        return self._post("accounts-reset", {"persons": list(persons)})

    def who(self, query: Mapping[str, str]) -> Request:
        """The directory's view of an account (`user_id`) or a roster person (`person`)."""
        return self._post("who", dict(query))

    def rtc_facts(self, user_id: UserId, room_id: RoomId) -> Request:
        """What the SFU's rules need to know of one user in one room."""
        return self._post("rtc-facts", {"user_id": user_id, "room_id": room_id})

    def stickers(self, pack: Mapping[str, Any], class_id: str | None) -> Request:
        """Puts an image pack (its `m.room.image_pack` content) into the school's spaces, or
        into one class's space; answered with the rooms and how many accounts now offer it."""
        body: dict[str, Any] = {"pack": dict(pack)}
        if class_id is not None:
            body["class"] = class_id
        return self._post("stickers", body)

    def news_post(
        self,
        *,
        author: str,
        key: str,
        html: str,
        title: str | None = None,
        pin: bool = False,
        school: str | None = None,
    ) -> Request:
        """Posts an article into the school news as `author` (once per `key`), pinned if asked;
        answered as `parse_news_post` reads."""
        body: dict[str, Any] = {"author": author, "key": key, "html": html, "pin": pin}
        if title is not None:
            body["title"] = title
        if school is not None:
            body["school"] = school
        return self._post("news-post", body)

    def rooms(self, alias_localparts: Sequence[str]) -> Request:
        """The room IDs of provisioned rooms, by their alias-scheme names."""
        return self._post("rooms", {"aliases": list(alias_localparts)})

    def upgrade_room(self, room: str, version: str | None) -> Request:
        """Upgrades a provisioned room (its ID or alias) as the platform's bot, to `version`
        or the server's default room version."""
        body = {"room": room} if version is None else {"room": room, "version": version}
        return self._post("rooms-upgrade", body)

    def person_data(self, person: str) -> Request:
        """The module's rows about a person and their account's uploads (read only)."""
        return self._post("person-data", {"person": person})

    def person_redact(self, person: str) -> Request:
        """Starts redacting every event of a person's account; answered with a `redact_id`."""
        return self._post("person-redact", {"person": person})

    def person_redact_more(self, person: str) -> Request:
        """Redacts a batch of the events Synapse's redaction leaves (reactions, stickers, polls
        and votes); answered with `redacted` by type, `failed` and whether there is `more`."""
        return self._post("person-redact-more", {"person": person})

    def person_redact_status(self, redact_id: str) -> Request:
        return self._post("person-redact-status", {"redact_id": redact_id})

    def person_erase(self, person: str) -> Request:
        """Deletes the uploads, deactivates the account with erasure, removes the rows."""
        return self._post("person-erase", {"person": person})


# -- answers ------------------------------------------------------------------------------


@attrs.frozen
class IssuedCode:
    person: str
    name: str
    code: str
    expires_ms: int

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class SkippedPerson:
    person: str
    reason: str


@attrs.frozen
class IssuedAccount:
    person: str
    user_id: str
    password: str | None  # None: the person already had an account
    # What the printed card says of whom it is for (`sferumctl accounts sheet`).
    name: str = ""
    classes: tuple[str, ...] = ()  # the titles of the person's classes, or of the children's
    staff: bool = False  # a teacher or staff member: their cards go on a sheet of their own

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Problem:
    """One mistake in an uploaded roster, where the server found it."""

    file: str | None
    line: int | None
    column: int | None
    message: str

    def __str__(self) -> str:
        where = [str(part) for part in (self.file, self.line, self.column) if part is not None]
        return ":".join([*where, f" {self.message}"]) if where else self.message


class Refused(Exception):
    """The server answered with an error status (its Matrix-style errcode and error, if any)."""

    def __init__(self, response: Response) -> None:
        body = response.json_object()
        self.status = response.status
        self.errcode = str(body.get("errcode") or "")
        self.error = str(body.get("error") or response.body[:200].decode(errors="replace"))
        raw = body.get(PROBLEMS_KEY)
        self.problems = tuple(_problem(p) for p in raw or () if isinstance(p, dict))
        super().__init__(" ".join(str(p) for p in (self.status, self.errcode, self.error) if p))


class Unexpected(Exception):
    """A 200 answer without the shape this request's answer has."""

    def __init__(self, response: Response, what: str) -> None:
        super().__init__(f"unexpected answer from the server ({what}): {response.body[:200]!r}")


def ok_json(response: Response) -> dict[str, Any]:
    """The JSON object of a 200 answer; Refused for any other status."""
    if response.status != 200:
        raise Refused(response)
    return response.json_object()


Counts = dict[str, dict[str, int]]


def parse_roster_counts(response: Response) -> Counts:
    """{kind: {"created": n, "updated": n, "deleted": n}} from a roster import's answer."""
    counts = ok_json(response).get("counts")
    if not isinstance(counts, dict) or not all(
        isinstance(row, dict) and all(isinstance(n, int) for n in row.values())
        for row in counts.values()
    ):
        raise Unexpected(response, "no counts by kind")
    return counts


def parse_reconcile(response: Response) -> dict[str, int]:
    """{"rooms_created": n, "joined": n, "removed": n, ...} from a finished run's status."""
    report = ok_json(response).get("reconcile")
    if not isinstance(report, dict) or not all(isinstance(n, int) for n in report.values()):
        raise Unexpected(response, "no reconcile report")
    return report


RUN_STATES = ("queued", "running", "finished")


@attrs.frozen
class ReconcileStatus:
    """Where one reconcile run is (`reconcile` and `reconcile-status` answer alike).

    `progress` is the run going now, or the last one, which may be another than `run`: a run
    asked for during a run waits for it ({"run", "rooms_done", "rooms_total", "joined", ...}).
    `report` is there once `run` has finished.
    """

    run: int
    state: str  # one of RUN_STATES
    progress: Mapping[str, int | None]
    report: Mapping[str, int] | None

    @property
    def finished(self) -> bool:
        return self.state == "finished"


def parse_reconcile_status(response: Response) -> ReconcileStatus:
    body = ok_json(response)
    run, state, progress = body.get("run"), body.get("state"), body.get("progress", {})
    if not (
        isinstance(run, int)
        and state in RUN_STATES
        and isinstance(progress, dict)
        and all(n is None or isinstance(n, int) for n in progress.values())
    ):
        raise Unexpected(response, "no reconcile run status")
    report = parse_reconcile(response) if state == "finished" else None
    return ReconcileStatus(run, str(state), progress, report)


def parse_link_codes(response: Response) -> tuple[list[IssuedCode], list[SkippedPerson]]:
    body = ok_json(response)
    codes, skipped = body.get("codes"), body.get("skipped")
    try:
        assert isinstance(codes, list) and isinstance(skipped, list)
        return (
            [
                IssuedCode(str(c["person"]), str(c["name"]), str(c["code"]), int(c["expires_ms"]))
                for c in codes
            ],
            [SkippedPerson(str(s["person"]), str(s["reason"])) for s in skipped],
        )
    except (AssertionError, KeyError, TypeError, ValueError):
        raise Unexpected(response, "no list of codes") from None


def parse_accounts(response: Response) -> list[IssuedAccount]:
    accounts = ok_json(response).get("accounts")
    if not isinstance(accounts, list) or not all(map(_is_account, accounts)):
        raise Unexpected(response, "no list of accounts")
    return [
        IssuedAccount(
            a["person"],
            a["user_id"],
            a["password"],
            name=a.get("name", ""),
            classes=tuple(a.get("classes", ())),
            staff=a.get("staff", False),
        )
        for a in accounts
    ]


def parse_object(response: Response) -> dict[str, Any]:
    """The answer of `who` and `rtc-facts`: a JSON object the caller's rules read."""
    body = ok_json(response)
    if not body:
        raise Unexpected(response, "no JSON object")
    return body


def parse_rooms(response: Response) -> dict[str, RoomId]:
    """{alias localpart: room ID} of the provisioned rooms that exist."""
    rooms = ok_json(response).get("rooms")
    if not isinstance(rooms, dict):
        raise Unexpected(response, "no rooms")
    return {str(alias): RoomId(str(room_id)) for alias, room_id in rooms.items()}


@attrs.frozen
class UpgradedRoom:
    """`rooms-upgrade`'s answer: the old room, its replacement, and what it is."""

    room_id: RoomId
    replacement_room: RoomId
    version: str
    kind: str
    scope: str


def parse_upgraded_room(response: Response) -> UpgradedRoom:
    body = ok_json(response)
    fields = ("room_id", "replacement_room", "version", "kind", "scope")
    if not all(isinstance(body.get(name), str) for name in fields):
        raise Unexpected(response, "no upgraded room")
    return UpgradedRoom(
        RoomId(body["room_id"]),
        RoomId(body["replacement_room"]),
        body["version"],
        body["kind"],
        body["scope"],
    )


@attrs.frozen
class PersonData:
    """`person-data`'s answer: rows by table (column: value), uploads' metadata."""

    person: str
    user_id: str | None
    tables: dict[str, list[dict[str, Any]]]
    media: list[dict[str, Any]]
    # The account's events of the types erasing redacts beyond Synapse's own redaction (which
    # takes messages and memberships) that are not redacted yet: {event type: count}.
    other_events: dict[str, int] = attrs.field(factory=dict)


def parse_person_data(response: Response) -> PersonData:
    body = ok_json(response)
    tables, media, user_id = body.get("tables"), body.get("media"), body.get("user_id")
    other = body.get("other_events", {})
    if not (
        isinstance(other, dict)
        and all(isinstance(n, int) for n in other.values())
        and isinstance(body.get("person"), str)
        and (user_id is None or isinstance(user_id, str))
        and isinstance(tables, dict)
        and all(isinstance(rows, list) for rows in tables.values())
        and isinstance(media, list)
        and all(isinstance(m, dict) and isinstance(m.get("media_id"), str) for m in media)
    ):
        raise Unexpected(response, "no person's data")
    return PersonData(body["person"], user_id, tables, media, other)


ARTICLE_ACTIONS = ("posted", "edited", "unchanged")


@attrs.frozen
class PostedArticle:
    """`news-post`'s answer: where the article is, and what this request changed."""

    org_id: str
    room_id: str
    event_id: str  # the post
    author: str  # the sender's user ID
    action: str  # posted; edited (it had changed); unchanged (nothing sent)
    sent: str | None  # the event this request sent: the post, or its edit
    pinned: bool  # True: pinned by this request
    dropped: tuple[str, ...]  # what the allow-list left out of the HTML


def parse_news_post(response: Response) -> PostedArticle:
    body = ok_json(response)
    names = ("org_id", "room_id", "event_id", "author")
    dropped, sent = body.get("dropped"), body.get("sent")
    if not (
        all(isinstance(body.get(name), str) for name in names)
        and body.get("action") in ARTICLE_ACTIONS
        and (sent is None or isinstance(sent, str))
        and isinstance(body.get("pinned"), bool)
        and isinstance(dropped, list)
        and all(isinstance(d, str) for d in dropped)
    ):
        raise Unexpected(response, "no posted article")
    return PostedArticle(
        org_id=body["org_id"],
        room_id=body["room_id"],
        event_id=body["event_id"],
        author=body["author"],
        action=body["action"],
        sent=sent,
        pinned=body["pinned"],
        dropped=tuple(dropped),
    )


def parse_redact_id(response: Response) -> str:
    redact_id = ok_json(response).get("redact_id")
    if not isinstance(redact_id, str):
        raise Unexpected(response, "no redact_id")
    return redact_id


def _is_account(item: object) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("person"), str)
        and isinstance(item.get("user_id"), str)
        and "password" in item
        and isinstance(item["password"], str | None)
        and isinstance(item.get("name", ""), str)
        and isinstance(item.get("classes", []), list)
        and all(isinstance(c, str) for c in item.get("classes", []))
        and isinstance(item.get("staff", False), bool)
    )


def _problem(raw: Mapping[str, Any]) -> Problem:
    def number(key: str) -> int | None:
        value = raw.get(key)
        return value if isinstance(value, int) else None

    file = raw.get("file")
    return Problem(
        file if isinstance(file, str) else None,
        number("line"),
        number("column"),
        str(raw.get("message", "")),
    )

