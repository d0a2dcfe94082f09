"""Client of the platform's admin API, served by the module at /_synapse/client/sferum/admin/v1.

Building requests and reading responses are pure (`AdminApi`, `parse_*`), so the protocol is
tested without a server; `call` is the only part that does I/O.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import attrs

from synapse_sferum.admin_protocol import PREFIX, PROBLEMS_KEY, ROSTER_NAME_PARAM
from synapse_sferum.ctl.deployment import SFERUM_MODULE, Deployment, client_base_url
from synapse_sferum.ctl.errors import EXIT_UNREACHABLE, CtlError
from synapse_sferum.ctl.http import open_local

TIMEOUT_SECONDS = 300.0  # a whole district's roster is imported in one transaction


@attrs.frozen
class Request:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


@attrs.frozen
class Response:
    status: int
    body: bytes


@attrs.frozen
class AdminApi:
    """Builds the admin API's requests for one server."""

    base_url: str
    secret: str

    def _post(self, path: str, content_type: str, body: bytes, **query: str) -> Request:
        url = f"{self.base_url}{PREFIX}/{path}"
        return Request(
            method="POST",
            url=f"{url}?{urlencode(query)}" if query else url,
            headers={"Authorization": f"Bearer {self.secret}", "Content-Type": content_type},
            body=body,
        )

    def import_roster(self, zip_bytes: bytes, *, name: str, dry_run: bool) -> Request:
        query = {ROSTER_NAME_PARAM: name}
        if dry_run:
            query["dry_run"] = "true"
        return self._post("roster", "application/zip", zip_bytes, **query)

    def issue_link_codes(
        self, *, persons: Sequence[str], class_id: str | None, expires_days: int | None
    ) -> Request:
        body: dict[str, Any] = {"class": class_id} if class_id else {"persons": list(persons)}
        if expires_days is not None:
            body["expires_days"] = expires_days
        return self._post("link-codes", "application/json", json.dumps(body).encode())

    def reconcile(self) -> Request:
        return self._post("reconcile", "application/json", b"{}")

    def issue_accounts(
        self, *, persons: Sequence[str] = (), class_id: str | None = None
    ) -> Request:
        selection = {"class": class_id} if class_id is not None else {"persons": list(persons)}
        return self._post("accounts", "application/json", json.dumps(selection).encode())

    def reset_accounts(self, *, persons: Sequence[str]) -> Request:
        """New cards for these people's accounts (answered like `issue_accounts`)."""
        body = json.dumps({"persons": list(persons)}).encode()
        return self._post("accounts-reset", "application/json", body)


@attrs.frozen
class IssuedCode:
    person: str
    name: str
    code: str
    expires_ms: int


@attrs.frozen
class SkippedPerson:
    person: str
    reason: str


def parse_link_codes(response: Response) -> tuple[list[IssuedCode], list[SkippedPerson]]:
    body = _ok_json(response)
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
        raise _unexpected(response, "no list of codes") from None


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


class Rejected(CtlError):
    """The server refused the request as invalid (400) or naming something unknown (404)."""

    def __init__(self, errcode: str, error: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(f"{error} ({errcode})", details=[str(p) for p in problems])
        self.errcode = errcode
        self.problems = tuple(problems)


@attrs.frozen
class IssuedAccount:
    person: str
    user_id: str
    password: str | None  # None: the person already had an account
    name: str = ""  # whom the card is for, and their classes' titles (the sheet prints them)
    classes: tuple[str, ...] = ()
    staff: bool = False  # a teacher's or staff member's card: on a sheet of its own


Counts = dict[str, dict[str, int]]


def parse_roster_counts(response: Response) -> Counts:
    """{kind: {"created": n, "updated": n, "deleted": n}} from a roster import's answer."""
    counts = _ok_json(response).get("counts")
    if not isinstance(counts, dict) or not all(
        isinstance(row, dict) and all(isinstance(n, int) for n in row.values())
        for row in counts.values()
    ):
        raise _unexpected(response, "no counts by kind")
    return counts


def parse_reconcile(response: Response) -> dict[str, int]:
    """{"rooms_created": n, "joined": n, "removed": n, ...} from a reconcile's answer."""
    report = _ok_json(response).get("reconcile")
    if not isinstance(report, dict) or not all(isinstance(n, int) for n in report.values()):
        raise _unexpected(response, "no reconcile report")
    return report


def parse_accounts(response: Response) -> list[IssuedAccount]:
    accounts = _ok_json(response).get("accounts")
    if not isinstance(accounts, list) or not all(map(_is_account, accounts)):
        raise _unexpected(response, "no list of accounts")
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


def _ok_json(response: Response) -> dict[str, Any]:
    """The JSON object of a 200 response; otherwise the error that explains the status."""
    try:
        body = json.loads(response.body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    if response.status == 200:
        return body
    errcode = body.get("errcode")
    error = body.get("error") or response.body[:200].decode(errors="replace")
    answer = " ".join(str(part) for part in (response.status, errcode, error) if part)
    if errcode == "M_UNRECOGNIZED":
        message = f"the server does not serve {PREFIX}: is {SFERUM_MODULE} in its modules?"
    elif response.status in (400, 404) and errcode:
        problems = body.get(PROBLEMS_KEY) or []
        raise Rejected(errcode, error, [_problem(p) for p in problems if isinstance(p, dict)])
    elif response.status in (401, 403):
        message = (
            f"the server refused the admin API secret ({answer}); sferumctl sends "
            "admin_api_secret from the deployment's secrets.yaml, which must match the "
            "module's config"
        )
    elif response.status >= 500:
        message = f"the server failed ({answer}); see its log"
    else:
        message = f"unexpected answer ({answer})"
    raise CtlError(message, exit_code=EXIT_UNREACHABLE)


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


def _unexpected(response: Response, what: str) -> CtlError:
    return CtlError(
        f"unexpected answer from the server ({what}): {response.body[:200]!r}",
        exit_code=EXIT_UNREACHABLE,
    )


def call(deployment: Deployment, build: Callable[[AdminApi], Request]) -> Response:
    """Sends the request that `build` makes for this deployment's server and secret."""
    api = AdminApi(client_base_url(deployment.load_config()), deployment.admin_api_secret())
    request = build(api)
    http_request = urllib.request.Request(
        request.url, data=request.body, headers=dict(request.headers), method=request.method
    )
    try:
        with open_local(http_request, timeout=TIMEOUT_SECONDS) as answer:
            return Response(answer.status, answer.read())
    except urllib.error.HTTPError as e:
        with e:
            return Response(e.code, e.read())
    except OSError as e:  # URLError (refused, unknown host), timeouts
        reason = getattr(e, "reason", e)
        raise CtlError(
            f"cannot reach the server at {api.base_url}: {reason}",
            details=[f"is the server running? try: sferumctl start {deployment.root}"],
            exit_code=EXIT_UNREACHABLE,
        ) from None
