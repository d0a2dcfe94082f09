"""A real OneRoster 1.2 REST provider for tests, on 127.0.0.1 at a free port, in the test's loop.

It serves a OneRoster CSV folder (1.1 roster columns plus gradebook files) as the 1.2 JSON
binding: `/ims/oneroster/rostering/v1p2/<collection>` and `/ims/oneroster/gradebook/v1p2/...`
with `limit`/`offset` paging and `X-Total-Count`, behind OAuth 2 client credentials
(`POST /oauth/token`, client_secret_basic or client_secret_post; bearer tokens that expire).

Switches a test can flip: `fail_status` (every data GET answers it), `delay` (seconds before a
data GET answers), `set_score`, `delete_result`, `revoke_tokens`, `token_lifetime`.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.integration.harness import free_port

CLIENT_ID = "diary-bridge"
CLIENT_SECRET = "diary-bridge-secret"
ROSTERING = "/ims/oneroster/rostering/v1p2"
GRADEBOOK = "/ims/oneroster/gradebook/v1p2"
COLLECTIONS = {
    "orgs": ROSTERING,
    "users": ROSTERING,
    "classes": ROSTERING,
    "enrollments": ROSTERING,
    "demographics": ROSTERING,
    "academicSessions": ROSTERING,
    "courses": ROSTERING,
    "categories": GRADEBOOK,
    "lineItems": GRADEBOOK,
    "results": GRADEBOOK,
}
# What a CSV column's GUIDRef points at, for the `type` of the JSON reference.
REF_TYPES = {
    "parent": "org",
    "course": "course",
    "school": "org",
    "org": "org",
    "term": "academicSession",
    "schoolYear": "academicSession",
    "user": "user",
    "class": "class",
    "agent": "user",
    "category": "category",
    "gradingPeriod": "academicSession",
    "lineItem": "lineItem",
    "student": "user",
}
BOOLEANS = {"enabledUser", "primary", "americanIndianOrAlaskaNative", "asian",
            "blackOrAfricanAmerican", "nativeHawaiianOrOtherPacificIslander", "white",
            "demographicRaceTwoOrMoreRaces", "hispanicOrLatinoEthnicity"}  # fmt: skip
LISTS = {"grades", "subjects", "subjectCodes", "periods"}
NUMBERS = {"score", "resultValueMin", "resultValueMax", "weight"}
DATE_TIMES = {"assignDate", "dueDate"}  # DateTime in the 1.2 JSON binding, dates in CSV
ROLES_TO_1_2 = {"administrator": "siteAdministrator"}
MAX_LIMIT = 1000


def read_csv_folder(folder: Path) -> dict[str, list[dict[str, str]]]:
    """The folder's OneRoster CSVs as rows, by collection name (a file that is not there is
    an empty collection)."""
    tables: dict[str, list[dict[str, str]]] = {}
    for collection in COLLECTIONS:
        path = folder / f"{collection}.csv"
        if path.exists():
            with path.open(encoding="utf-8-sig", newline="") as f:
                tables[collection] = list(csv.DictReader(f))
        else:
            tables[collection] = []
    return tables


class OneRosterRestServer:
    def __init__(
        self,
        folder: Path,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        token_lifetime: float = 3600.0,
    ):
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.token_url = f"{self.base_url}/oauth/token"
        self.data: dict[str, list[dict[str, Any]]] = {
            collection: [self._to_json(collection, row) for row in rows]
            for collection, rows in read_csv_folder(folder).items()
        }
        self.fail_status: int | None = None
        self.delay = 0.0
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.tokens_issued = 0
        self.requests: list[str] = []  # path?query of each data GET
        self.scopes: list[str] = []  # the scope of each token request
        self._runner: web.AppRunner | None = None

    # -- switches ------------------------------------------------------------------------------

    def set_score(self, result_id: str, score: float | None, text_score: str = "") -> None:
        result = next(r for r in self.data["results"] if r["sourcedId"] == result_id)
        result["score"] = score
        result["textScore"] = text_score

    def delete_result(self, result_id: str) -> None:
        self.data["results"] = [r for r in self.data["results"] if r["sourcedId"] != result_id]

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/oauth/token", self._token)
        for collection, root in COLLECTIONS.items():
            app.router.add_get(f"{root}/{collection}", self._collection(collection))
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- CSV rows → 1.2 JSON ---------------------------------------------------------------------

    def _ref(self, kind: str, sourced_id: str) -> dict[str, str]:
        type_ = REF_TYPES.get(kind, kind)
        plural = {"academicSession": "academicSessions", "class": "classes"}.get(
            type_, f"{type_}s"
        )
        root = COLLECTIONS.get(plural, ROSTERING)
        return {
            "href": f"{self.base_url}{root}/{plural}/{sourced_id}",
            "sourcedId": sourced_id,
            "type": type_,
        }

    def _to_json(self, collection: str, row: Mapping[str, str]) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "sourcedId": row["sourcedId"],
            "status": row.get("status") or "active",
            "dateLastModified": row.get("dateLastModified") or "2025-09-01T00:00:00.000Z",
        }
        for column, value in row.items():
            if column in obj or column is None:
                continue
            if collection == "users" and column in ("role", "orgSourcedIds"):
                continue
            if column.endswith("SourcedIds"):
                kind = column.removesuffix("SourcedIds")
                obj[f"{kind}s"] = [self._ref(kind, i) for i in value.split(",") if i]
            elif column.endswith("SourcedId"):
                kind = column.removesuffix("SourcedId")
                if value:
                    obj[kind] = self._ref(kind, value)
            elif column in BOOLEANS:
                if value:
                    obj[column] = value.strip().lower() == "true"
            elif column in LISTS:
                obj[column] = [v.strip() for v in value.split(",") if v.strip()]
            elif column in NUMBERS:
                if value:
                    obj[column] = float(value)
            elif column in DATE_TIMES and len(value) == 10:
                obj[column] = f"{value}T00:00:00.000Z"
            elif column == "userIds":
                obj[column] = []
            else:
                obj[column] = value
        if collection == "users":
            orgs = [o for o in row.get("orgSourcedIds", "").split(",") if o]
            role = ROLES_TO_1_2.get(row.get("role", ""), row.get("role", ""))
            obj["roles"] = [
                {
                    "roleType": "primary" if i == 0 else "secondary",
                    "role": role,
                    "org": self._ref("org", org),
                }
                for i, org in enumerate(orgs)
            ]
            if orgs:
                obj["primaryOrg"] = self._ref("org", orgs[0])
        return obj

    # -- handlers --------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id = str(form.get("client_id", ""))
        client_secret = str(form.get("client_secret", ""))
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            decoded = base64.b64decode(header[6:]).decode()
            user, _, password = decoded.partition(":")
            client_id, client_secret = unquote(user), unquote(password)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if client_id != self.client_id or not secrets.compare_digest(
            client_secret, self.client_secret
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        self.scopes.append(str(form.get("scope", "")))
        token = secrets.token_urlsafe(16)
        self.tokens[token] = time.monotonic() + self.token_lifetime
        self.tokens_issued += 1
        return web.json_response(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": self.token_lifetime,
                "scope": form.get("scope", ""),
            }
        )

    def _collection(self, collection: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            self.requests.append(request.path_qs)
            header = request.headers.get("Authorization", "")
            token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
            if self.tokens.get(token, 0.0) <= time.monotonic():
                return web.json_response(
                    {"imsx_codeMajor": "failure", "imsx_description": "invalid token"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail_status is not None:
                return web.json_response(
                    {"imsx_codeMajor": "failure", "imsx_description": "switched to fail"},
                    status=self.fail_status,
                )
            try:
                limit = int(request.query.get("limit", "100"))
                offset = int(request.query.get("offset", "0"))
            except ValueError:
                return web.json_response({"imsx_codeMajor": "failure"}, status=400)
            if not (1 <= limit <= MAX_LIMIT) or offset < 0:
                return web.json_response({"imsx_codeMajor": "failure"}, status=400)
            items = self.data[collection]
            return web.json_response(
                {collection: items[offset : offset + limit]},
                headers={"X-Total-Count": str(len(items))},
            )

        return handler
