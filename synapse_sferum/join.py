"""The registration page at `/join` (issue 13): a parent or a pupil with only a phone joins by
the link their teacher gave them, `<public base URL>/join#<CODE>`.

Matrix apps on phones cannot run this server's registration (Element X registers only where
next-generation auth is set up; FluffyChat knows neither of its stages), so the server offers
its own page. The page is a client of the standard Matrix registration, the same UIA flow as
Element's (`m.login.registration_token` with the linking code, `m.login.msisdn` with the SMS
code, then a password): every rule and error is the module's own (`registration`,
`msisdn_delegate`), none is written twice. The module only adds:

* `GET /join`, its script and its style: Russian, readable on a phone, no external assets, and
  a CSP that lets the page run its own script and talk to this server only;
* `POST /join/code`: whose code this is (the name the person confirms), or why it cannot be
  used, by the checks registration makes (`policy.identity`), a limited number of times per
  network address and minute. Codes carry 60 random bits, so the limit is against floods,
  not guessing; it fits a parents' meeting on one school Wi-Fi.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from synapse.module_api import DirectServeJsonResource, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from sferum_shared import Clock
from sferum_shared.model import Role
from sferum_shared.vocabulary import Key, Reason
from sferum_shared.widgets import page_assets
from synapse_sferum.bodies import json_object
from synapse_sferum.policy.identity import (
    MESSAGES,
    code_refusal,
    new_account_refusal,
)
from synapse_sferum.policy.invites import CODES_PAGE
from synapse_sferum.registration import CODE_ALPHABET, Registrar
from synapse_sferum.service import DirectoryService
from synapse_sferum.store import identity

logger = logging.getLogger(__name__)

PAGE_PATH = "/join"
STATIC = Path(__file__).parent / "static"
#: The page's files, a fixed table: no path from a request reaches the disk. `codes.js` is the
#: staff room's page of invite links (`invites`), a widget like the bridge's and the SFU's.
ASSETS = page_assets(STATIC, "join.js", "join.css", "codes.js")
#: Lookups per network address in a window: a meeting of thirty parents on one Wi-Fi, each
#: typing a code or two, stays well within it; a script stops at it.
LOOKUPS_PER_WINDOW = 120
WINDOW_SECONDS = 600
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",  # the code is in the fragment; never send the page's URL
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_ROLE_WORDS = (  # the first that applies names the person's part in the school
    (Role.STUDENT, "pupil"),
    (Role.GUARDIAN, "guardian"),
    (Role.TEACHER, "teacher"),
    (Role.STAFF, "staff"),
)


def normalize_code(raw: str) -> str | None:
    """A code as typed or linked (any case, spaces, with or without its dashes) in its printed
    form, "K7QM-4TXP-9RWA"; None if it cannot be one."""
    chars = "".join(c for c in raw.upper() if c not in " -")
    if len(chars) != 12 or any(c not in CODE_ALPHABET for c in chars):
        return None
    return "-".join(chars[i : i + 4] for i in range(0, 12, 4))


class AttemptWindow:
    """At most `limit` attempts per key in any `seconds`: a sliding window, in memory (one
    process serves `/join`; a restart forgets, which only ever lets someone in sooner)."""

    def __init__(self, limit: int, seconds: float, now: Callable[[], float]) -> None:
        self._limit = limit
        self._seconds = seconds
        self._now = now
        self._seen: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        now = self._now()
        times = self._seen.setdefault(key, deque())
        while times and times[0] <= now - self._seconds:
            times.popleft()
        if len(times) >= self._limit:
            return False
        times.append(now)
        if len(self._seen) > 10_000:  # forget addresses that went quiet
            self._seen = {k: v for k, v in self._seen.items() if v and v[-1] > now - self._seconds}
        return True


def _refused(reason: Reason) -> SynapseError:
    status = 404 if reason is Reason.LINK_CODE_UNKNOWN else 403
    errcode = Codes.NOT_FOUND if status == 404 else Codes.FORBIDDEN
    return SynapseError(status, MESSAGES[reason], errcode, {Key.REASON: reason.value})


#: The staff room's page of invite links (`invites`) is a widget: any client may frame it.
WIDGET_HEADERS = {
    **PAGE_HEADERS,
    "Content-Security-Policy": PAGE_HEADERS["Content-Security-Policy"].replace(
        "frame-ancestors 'none'", "frame-ancestors *"
    ),
}
#: The pages under `/join`: (file, headers) by path.
PAGES = {
    PAGE_PATH: ("join.html", PAGE_HEADERS),
    CODES_PAGE: ("codes.html", WIDGET_HEADERS),
}

PostHandler = Callable[[Any, dict[str, Any]], Awaitable[dict[str, Any]]]


class _JoinResource(DirectServeJsonResource):
    """Everything under `/join`, in one resource: Synapse registers module resources by path,
    and one under another's path breaks its resource tree where a listener serves several
    kinds (federation, workers). Pages and files are written here; answers and errors are
    JSON."""

    isLeaf = True  # every path below `/join` comes here (twisted's Resource)

    def __init__(self, posts: Mapping[str, PostHandler]) -> None:
        super().__init__()
        self._posts = posts

    async def _async_render_GET(self, request: Any) -> None:
        path = request.path.decode("utf-8", "replace").rstrip("/")
        asset = path.removeprefix(f"{PAGE_PATH}/static/")
        if path in PAGES:
            name, headers = PAGES[path]
            _write(request, STATIC / name, "text/html", headers)
        elif asset != path and asset in ASSETS:
            _write(request, ASSETS[asset].path, ASSETS[asset].content_type, PAGE_HEADERS)
        else:
            raise SynapseError(404, "No such page", Codes.NOT_FOUND)

    async def _async_render_POST(self, request: Any) -> tuple[int, Any]:
        handler = self._posts.get(request.path.decode("utf-8", "replace").rstrip("/"))
        if handler is None:
            raise SynapseError(404, "No such endpoint", Codes.UNRECOGNIZED)
        return 200, await handler(request, json_object(request))


def _write(request: Any, path: Traversable, content_type: str, headers: dict[str, str]) -> None:
    body = path.read_bytes()
    request.setResponseCode(200)
    request.setHeader(b"Content-Type", f"{content_type}; charset=utf-8".encode())
    for header, value in headers.items():
        request.setHeader(header.encode(), value.encode())
    request.setHeader(b"Content-Length", str(len(body)).encode())
    request.write(body)
    request.finish()


class JoinPage:
    def __init__(
        self,
        api: ModuleApi,
        directory: DirectoryService,
        registrar: Registrar,
        clock: Clock,
        min_age: int,
        issue_codes: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    ) -> None:
        self._api = api
        self._directory = directory
        self._registrar = registrar
        self._clock = clock
        self._min_age = min_age
        self._issue_codes = issue_codes  # the staff room's page (`invites`)
        self._window = AttemptWindow(LOOKUPS_PER_WINDOW, WINDOW_SECONDS, clock.seconds)

    def register(self) -> None:
        async def lookup(request: Any, body: dict[str, Any]) -> dict[str, Any]:
            return await self.lookup(request.getClientAddress().host, body)

        async def issue(request: Any, body: dict[str, Any]) -> dict[str, Any]:
            return await self._issue_codes(body)

        posts = {f"{PAGE_PATH}/code": lookup, f"{CODES_PAGE}/issue": issue}
        self._api.register_web_resource(PAGE_PATH, _JoinResource(posts))

    async def lookup(self, address: str, body: dict[str, Any]) -> dict[str, Any]:
        """Whose code this is, for the person to confirm; refused as registration would be."""
        if not self._window.allow(address):
            raise SynapseError(
                429,
                "Too many codes tried from this network; wait a few minutes",
                Codes.LIMIT_EXCEEDED,
                {"retry_after_ms": WINDOW_SECONDS * 1000},
            )
        raw = body.get("code")
        if not isinstance(raw, str):
            raise SynapseError(400, "'code' must be a string", Codes.INVALID_PARAM)
        code = normalize_code(raw)
        if code is None:
            raise _refused(Reason.LINK_CODE_UNKNOWN)
        link = await self._directory.run("sferum_link_code", identity.link_code_txn, code)
        refusal = code_refusal(link, self._clock.ms())
        if refusal is None and link is not None:
            applicant = await self._registrar.applicant(link.person_id)
            refusal = new_account_refusal(applicant, self._directory.today(), self._min_age)
        if refusal is not None or link is None:
            raise _refused(refusal or Reason.LINK_CODE_UNKNOWN)
        person = await self._directory.run("sferum_person", identity.person_txn, link.person_id)
        if person is None:
            raise _refused(Reason.PERSON_NOT_IN_DIRECTORY)
        role = next((word for role, word in _ROLE_WORDS if role in person.roles), "member")
        return {"code": code, "name": person.real_name, "role": role}
