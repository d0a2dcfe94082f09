"""OneRoster 1.2 REST as a diary source: rostering and gradebook over OAuth 2 client credentials.

Sans-I/O, as matrix-nio does it: building requests, reading responses, paging, turning the JSON
objects into rows and rows into the model and the roster zip are plain functions over
`sferum_shared.http`'s `Request`/`Response`, tested without a server; `OneRosterRestSource` only
moves bytes with aiohttp and keeps the token.

Whatever keeps a whole collection from being read (transport error, timeout, an HTTP error,
JSON that is no OneRoster list) raises `SourceUnavailable`, naming the URL: a partial
gradebook would look like deletions. A bad item inside a good page is a `SourceProblem`
(where = the item's URL) and the other items still go through.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import attrs

from bridges.diary.model import DiarySnapshot, SourceProblem
from bridges.diary.sources import gradebook
from bridges.diary.sources.base import SourceUnavailable
from sferum_shared.http import Request, Response, Unreachable
from sferum_shared.web import send

ROSTERING = "/ims/oneroster/rostering/v1p2"
GRADEBOOK = "/ims/oneroster/gradebook/v1p2"
ROSTER_COLLECTIONS = (
    "orgs",
    "users",
    "classes",
    "enrollments",
    "demographics",
    "academicSessions",
    "courses",
)
GRADEBOOK_COLLECTIONS = ("categories", "lineItems", "results")
COLLECTION_ROOTS = {
    **dict.fromkeys(ROSTER_COLLECTIONS, ROSTERING),
    **dict.fromkeys(GRADEBOOK_COLLECTIONS, GRADEBOOK),
}
# roster.readonly covers every rostering collection (demographics too); the narrower
# roster-core.readonly does not include demographics.
DEFAULT_SCOPES = (
    "https://purl.imsglobal.org/spec/or/v1p2/scope/roster.readonly",
    "https://purl.imsglobal.org/spec/or/v1p2/scope/gradebook.readonly",
)
# A token is renewed this long before it expires (at most a tenth of its lifetime), so a
# request never goes out with a token that expires on the way.
TOKEN_MARGIN_SECONDS = 30.0
# Far above any school's gradebook; stops a server that ignores `offset` from looping forever.
MAX_ITEMS = 1_000_000

# The OneRoster 1.1 CSV columns of the roster zip, in spec order.
ROSTER_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "orgs": ("sourcedId", "status", "dateLastModified", "name", "type", "identifier",
             "parentSourcedId"),
    "users": ("sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role",
              "username", "userIds", "givenName", "familyName", "middleName", "identifier",
              "email", "sms", "phone", "agentSourcedIds", "grades", "password"),
    "courses": ("sourcedId", "status", "dateLastModified", "schoolYearSourcedId", "title",
                "courseCode", "grades", "orgSourcedId", "subjects", "subjectCodes"),
    "classes": ("sourcedId", "status", "dateLastModified", "title", "grades", "courseSourcedId",
                "classCode", "classType", "location", "schoolSourcedId", "termSourcedIds",
                "subjects", "subjectCodes", "periods"),
    "enrollments": ("sourcedId", "status", "dateLastModified", "classSourcedId",
                    "schoolSourcedId", "userSourcedId", "role", "primary", "beginDate",
                    "endDate"),
    "academicSessions": ("sourcedId", "status", "dateLastModified", "title", "type",
                         "startDate", "endDate", "parentSourcedId", "schoolYear"),
    "demographics": ("sourcedId", "status", "dateLastModified", "birthDate", "sex",
                     "americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
                     "nativeHawaiianOrOtherPacificIslander", "white",
                     "demographicRaceTwoOrMoreRaces", "hispanicOrLatinoEthnicity",
                     "countryOfBirthCode", "stateOfBirthAbbreviation", "cityOfBirth",
                     "publicSchoolResidenceStatus"),
}  # fmt: skip
MANIFEST_FILES = ("academicSessions", "categories", "classes", "classResources", "courses",
                  "courseResources", "demographics", "enrollments", "lineItems", "orgs",
                  "resources", "results", "users")  # fmt: skip
# 1.2 roles with no 1.1 equivalent; the rest keep their name.
ROLES_TO_1_1 = {
    "districtAdministrator": "administrator",
    "siteAdministrator": "administrator",
    "systemAdministrator": "administrator",
    "principal": "administrator",
    "counselor": "administrator",
}

Row = dict[str, str]


# -- HTTP, without the I/O ---------------------------------------------------------------------


@attrs.frozen
class Token:
    access_token: str
    renew_at: float  # on the source's monotonic clock

    def fresh(self, now: float) -> bool:
        return now < self.renew_at


@attrs.frozen
class Page:
    items: list[Any]
    total: int | None  # X-Total-Count, when the server sent a readable one


def token_request(
    token_url: str, client_id: str, client_secret: str, scopes: Sequence[str]
) -> Request:
    """RFC 6749 §4.4 with client_secret_basic (§2.3.1: every server must take it; the id and
    secret are form-encoded before they are joined)."""
    credentials = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    form = {"grant_type": "client_credentials"}
    if scopes:
        form["scope"] = " ".join(scopes)
    return Request(
        "POST",
        token_url,
        {
            "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        },
        urlencode(form).encode(),
    )


def parse_token(response: Response, now: float) -> Token:
    """The access token of a token response; anything else is `SourceUnavailable`."""
    body = _json(response)
    if response.status != 200:
        detail = body.get("error", "") if isinstance(body, dict) else ""
        raise SourceUnavailable(
            f"token endpoint {response.url} answered HTTP {response.status}"
            + (f" ({detail})" if detail else "")
            + (": the client ID or secret is wrong" if response.status in (400, 401) else "")
        )
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise SourceUnavailable(f"token endpoint {response.url} sent no access_token")
    token_type = body.get("token_type", "bearer")
    if not isinstance(token_type, str) or token_type.casefold() != "bearer":
        raise SourceUnavailable(
            f"token endpoint {response.url} sent a {token_type!r} token, not a bearer token"
        )
    lifetime = body.get("expires_in", 3600)
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = 3600
    margin = min(TOKEN_MARGIN_SECONDS, lifetime / 10)
    return Token(body["access_token"], now + lifetime - margin)


def collection_url(base_url: str, collection: str, offset: int, limit: int) -> str:
    return f"{item_url(base_url, collection)}?{urlencode({'limit': limit, 'offset': offset})}"


def item_url(base_url: str, collection: str, sourced_id: str = "") -> str:
    """A collection's URL, or an item's (what problems name as `where`)."""
    url = f"{base_url.rstrip('/')}{COLLECTION_ROOTS[collection]}/{collection}"
    return f"{url}/{quote(sourced_id, safe='')}" if sourced_id else url


def page_request(url: str, token: Token) -> Request:
    return Request(
        "GET", url, {"Authorization": f"Bearer {token.access_token}", "Accept": "application/json"}
    )


def parse_page(response: Response, collection: str) -> Page:
    """One page of a collection: `{"<collection>": [...]}` plus X-Total-Count."""
    if response.status != 200:
        raise SourceUnavailable(
            f"GET {response.url} answered HTTP {response.status}{_snippet(response.body)}"
        )
    body = _json(response)
    items = body.get(collection) if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise SourceUnavailable(f"GET {response.url} sent no {collection!r} list")
    total: int | None = None
    header = response.headers.get("x-total-count", "").strip()
    if header.isdigit():
        total = int(header)
    return Page(items, total)


def next_offset(offset: int, received: int, limit: int, total: int | None) -> int | None:
    """Where the next page starts, or None when this was the last: at X-Total-Count, or after
    an empty page, or (without a count) after a short page."""
    following = offset + received
    if received == 0:
        return None
    if total is not None:
        return following if following < total else None
    return following if received >= limit else None


def _json(response: Response) -> Any:
    try:
        return json.loads(response.body)
    except ValueError as err:
        if response.status != 200:
            return None  # the status says enough
        raise SourceUnavailable(f"{response.url} sent no valid JSON ({err})") from err


def _snippet(body: bytes) -> str:
    text = body[:200].decode("utf-8", "replace").strip()
    return f": {text}" if text else ""


# -- JSON objects → rows ---------------------------------------------------------------------


class BadItem(ValueError):
    """An object in a page that cannot be read; it becomes a problem, not an exception."""


def flatten(obj: Any) -> Row:
    """A OneRoster 1.2 JSON object as a row with the CSV binding's column names: a GUIDRef
    `class` becomes `classSourcedId`, a list of them `terms` → `termSourcedIds`, lists of strings
    are comma-joined, booleans "true"/"false", numbers their text; other objects (metadata,
    extensions) are left out. A user's `roles` become the
    1.1 `role` (the primary one, mapped) and `orgSourcedIds`."""
    if not isinstance(obj, dict):
        raise BadItem(f"is a {type(obj).__name__}, not an object")
    sourced_id = obj.get("sourcedId")
    if not isinstance(sourced_id, str) or not sourced_id.strip():
        raise BadItem("has no sourcedId")
    row: Row = {}
    for key, value in obj.items():
        if key == "roles" and isinstance(value, list):
            row.update(_roles(value))
        elif key == "userIds" and isinstance(value, list):
            row[key] = ",".join(
                f"{{{u.get('type', '')}:{u.get('identifier', '')}}}"
                for u in value
                if isinstance(u, dict)
            )
        elif isinstance(value, dict):
            if "sourcedId" in value:
                row[f"{key}SourcedId"] = _text(value["sourcedId"], key)
        elif isinstance(value, list):
            if all(isinstance(v, dict) for v in value):
                ids = [_text(v.get("sourcedId", ""), key) for v in value]
                row[f"{key.removesuffix('s')}SourcedIds"] = ",".join(i for i in ids if i)
            else:
                row[key] = ",".join(_text(v, key) for v in value)
        else:
            row[key] = _text(value, key)
    return row


def _text(value: Any, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise BadItem(f"{key} is a {type(value).__name__}, not a value")


def _roles(roles: list[Any]) -> Row:
    grants = [r for r in roles if isinstance(r, dict) and isinstance(r.get("role"), str)]
    if not grants:
        return {}
    primary = next((r for r in grants if r.get("roleType") == "primary"), grants[0])
    orgs = [r["org"].get("sourcedId") for r in grants if isinstance(r.get("org"), dict)]
    role: str = primary["role"]
    return {
        "role": ROLES_TO_1_1.get(role, role),
        "orgSourcedIds": ",".join(dict.fromkeys(o for o in orgs if isinstance(o, str) and o)),
    }


def rows_from_items(
    items: Iterable[Any], collection: str, base_url: str, source_name: str
) -> tuple[list[Row], list[SourceProblem]]:
    """Rows of a collection's items (each with `gradebook.WHERE` = its URL), and a problem for
    each item that is not one."""
    rows: list[Row] = []
    problems: list[SourceProblem] = []
    for index, obj in enumerate(items):
        try:
            row = flatten(obj)
        except BadItem as err:
            sourced_id = obj.get("sourcedId") if isinstance(obj, dict) else None
            where = (
                item_url(base_url, collection, sourced_id)
                if isinstance(sourced_id, str) and sourced_id
                else f"{item_url(base_url, collection)} item {index}"
            )
            problems.append(SourceProblem(source_name, where, f"{collection}: {err}", "invalid"))
            continue
        row[gradebook.WHERE] = item_url(base_url, collection, row["sourcedId"])
        rows.append(row)
    return rows, problems


# -- rows → the model and the roster zip -----------------------------------------------------


def _active(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if r.get("status", "").strip().casefold() != "tobedeleted"]


def roster_zip(tables: Mapping[str, Sequence[Row]], system_name: str) -> bytes:
    """A OneRoster 1.1 bulk CSV zip of the rostering collections, as the module's
    `parse_roster_zip` takes it: status and dateLastModified stay empty (bulk), deleted rows
    are left out."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for collection, columns in ROSTER_COLUMNS.items():
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\r\n")
            writer.writerow(columns)
            for row in _active(tables.get(collection, ())):
                writer.writerow(
                    "" if column in ("status", "dateLastModified") else row.get(column, "")
                    for column in columns
                )
            archive.writestr(
                zipfile.ZipInfo(f"{collection}.csv"),
                text.getvalue().encode("utf-8"),
                zipfile.ZIP_DEFLATED,
            )
        manifest = io.StringIO()
        writer = csv.writer(manifest, lineterminator="\r\n")
        writer.writerows(
            [
                ("propertyName", "value"),
                ("manifest.version", "1.0"),
                ("oneroster.version", "1.1"),
                *(
                    (f"file.{file}", "bulk" if file in ROSTER_COLUMNS else "absent")
                    for file in MANIFEST_FILES
                ),
                ("source.systemName", system_name),
                ("source.systemCode", "oneroster-rest"),
            ]
        )
        archive.writestr(
            zipfile.ZipInfo("manifest.csv"),
            manifest.getvalue().encode("utf-8"),
            zipfile.ZIP_DEFLATED,
        )
    return buffer.getvalue()


def build_snapshot(
    tables: Mapping[str, Sequence[Row]],
    problems: Sequence[SourceProblem],
    source_name: str,
    timezone: str = "Europe/Moscow",
) -> DiarySnapshot:
    """The snapshot of fully fetched collections (rows by collection name)."""
    users = _active(tables.get("users", ()))
    pupils = {u["sourcedId"] for u in users if u.get("role") == "student"}
    marks, homework, found = gradebook.items_from_gradebook(
        tables.get("categories", ()),
        tables.get("lineItems", ()),
        tables.get("results", ()),
        pupils,
        source_name,
        gradebook.class_subjects(tables.get("classes", ()), tables.get("courses", ())),
        timezone,
    )
    return DiarySnapshot(
        marks=tuple(marks),
        homework=tuple(homework),
        problems=(*problems, *found),
        roster_zip=roster_zip(tables, source_name),
        complete=True,
    )


# -- the I/O -----------------------------------------------------------------------------------


class OneRosterRestSource:
    """Reads a OneRoster 1.2 REST provider. There is no cheap change check in OneRoster, so
    `changed()` is always false and the bridge's poll interval sets the pace."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        token_url: str | None = None,
        name: str | None = None,
        timeout: float = 10.0,
        page_size: int = 100,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        timezone: str = "Europe/Moscow",
        clock: Callable[[], float] = time.monotonic,
    ):
        """`base_url`: the server root the `/ims/oneroster/...` paths hang from; `token_url`:
        OneRoster leaves the token endpoint to the provider, so set it; it defaults to
        `base_url + "/oauth/token"`. `timeout` applies to each request; `timezone`: the
        school's, for the day of a date-time."""
        self._base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_url = token_url or f"{self._base_url}/oauth/token"
        self._name = name or f"oneroster-rest:{self._base_url}"
        self._timeout = timeout
        self._page_size = page_size
        self._scopes = tuple(scopes)
        self._timezone = timezone
        self._clock = clock
        self._token: Token | None = None

    @property
    def name(self) -> str:
        return self._name

    async def changed(self) -> bool:
        return False  # no cheap check: the full sync every sync_interval_seconds reads it

    async def snapshot(self) -> DiarySnapshot:
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        tables: dict[str, list[Row]] = {}
        problems: list[SourceProblem] = []
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for collection in (*ROSTER_COLLECTIONS, *GRADEBOOK_COLLECTIONS):
                items = await self._collection(session, collection)
                rows, found = rows_from_items(items, collection, self._base_url, self._name)
                tables[collection] = rows
                problems.extend(found)
        return build_snapshot(tables, problems, self._name, self._timezone)

    async def _collection(self, session: aiohttp.ClientSession, collection: str) -> list[Any]:
        items: list[Any] = []
        offset: int | None = 0
        while offset is not None:
            url = collection_url(self._base_url, collection, offset, self._page_size)
            page = parse_page(await self._get(session, url), collection)
            items.extend(page.items)
            if len(items) > MAX_ITEMS:
                raise SourceUnavailable(f"{url}: more than {MAX_ITEMS} {collection}; is the "
                                        "server ignoring offset?")  # fmt: skip
            offset = next_offset(offset, len(page.items), self._page_size, page.total)
        return items

    async def _get(self, session: aiohttp.ClientSession, url: str) -> Response:
        """GET with the cached token; on 401 the token is fetched anew and the GET tried once
        more (the server may have revoked it before its expiry)."""
        response = await self._send(session, page_request(url, await self._ensure(session)))
        if response.status == 401:
            self._token = None
            response = await self._send(session, page_request(url, await self._ensure(session)))
        return response

    async def _ensure(self, session: aiohttp.ClientSession) -> Token:
        if self._token is None or not self._token.fresh(self._clock()):
            request = token_request(
                self._token_url, self._client_id, self._client_secret, self._scopes
            )
            self._token = parse_token(await self._send(session, request), self._clock())
        return self._token

    async def _send(self, session: aiohttp.ClientSession, request: Request) -> Response:
        try:
            return await send(session, request)
        except Unreachable as err:
            if err.timed_out:
                raise SourceUnavailable(
                    f"{request.method} {request.url}: no answer within {self._timeout:g} s"
                ) from err
            raise SourceUnavailable(str(err)) from err
