"""The OneRoster REST source's pure parts: requests, responses, paging, rows, the mapping, the
roster zip. The source against a real server is in tests/integration/test_diary_rest_source.py."""

from __future__ import annotations

import base64
import csv
import json
import re
from datetime import date
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import pytest

from bridges.diary.model import Homework, Mark
from bridges.diary.sources import gradebook
from bridges.diary.sources.base import SourceUnavailable
from bridges.diary.sources.rest import (
    DEFAULT_SCOPES,
    Token,
    build_snapshot,
    collection_url,
    flatten,
    item_url,
    next_offset,
    page_request,
    parse_page,
    parse_token,
    roster_zip,
    rows_from_items,
    token_request,
)
from sferum_shared.http import Response
from synapse_sferum.roster.oneroster import parse_roster, parse_roster_zip
from tests.demo import ROSTER, demo_folder

REPO = Path(__file__).resolve().parents[2]
TODAY = date(2026, 11, 22)
DEMO_ROSTER = demo_folder(ROSTER, TODAY)
BASE = "https://sis.example/api"
SOURCE = "oneroster-rest:test"


def response(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, raw, headers or {}, "https://sis.example/x")


# -- token -----------------------------------------------------------------------------------


def test_token_request_uses_basic_auth_with_form_encoded_credentials() -> None:
    request = token_request("https://sis.example/oauth/token", "id:1", "s&cret", DEFAULT_SCOPES)
    assert request.method == "POST"
    scheme, _, encoded = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    assert (unquote(user), unquote(password)) == ("id:1", "s&cret")
    form = parse_qs(request.body.decode())
    assert form["grant_type"] == ["client_credentials"]
    assert form["scope"] == [" ".join(DEFAULT_SCOPES)]


def test_parse_token_renews_before_expiry() -> None:
    token = parse_token(
        response(200, {"access_token": "t", "token_type": "Bearer", "expires_in": 3600}), 100.0
    )
    assert token.access_token == "t"
    assert token.fresh(100.0 + 3500) and not token.fresh(100.0 + 3580)
    short = parse_token(response(200, {"access_token": "t", "expires_in": 10}), 0.0)
    assert short.fresh(8.9) and not short.fresh(9.0)  # a tenth of the lifetime, not 30 s


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (401, {"error": "invalid_client"}, "HTTP 401 (invalid_client): the client ID or secret"),
        (500, b"<html>oops</html>", "HTTP 500"),
        (200, {"token_type": "bearer"}, "no access_token"),
        (200, {"access_token": "t", "token_type": "mac"}, "not a bearer token"),
        (200, b"not json", "no valid JSON"),
    ],
)
def test_parse_token_refuses(status: int, body: object, says: str) -> None:
    with pytest.raises(SourceUnavailable, match=re.escape("https://sis.example/x")) as err:
        parse_token(response(status, body), 0.0)
    assert says in str(err.value)


# -- pages -----------------------------------------------------------------------------------


def test_urls() -> None:
    url = collection_url(BASE + "/", "results", 200, 100)
    parts = urlsplit(url)
    assert parts.path == "/api/ims/oneroster/gradebook/v1p2/results"
    assert parse_qs(parts.query) == {"limit": ["100"], "offset": ["200"]}
    assert item_url(BASE, "users", "p 1") == f"{BASE}/ims/oneroster/rostering/v1p2/users/p%201"
    request = page_request(url, Token("abc", 0.0))
    assert request.headers["Authorization"] == "Bearer abc"


def test_parse_page() -> None:
    page = parse_page(response(200, {"users": [{"sourcedId": "a"}]}, {"x-total-count": "7"}),
                      "users")  # fmt: skip
    assert page.items == [{"sourcedId": "a"}] and page.total == 7
    assert parse_page(response(200, {"users": []}), "users").total is None


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (500, b"Internal Server Error", "answered HTTP 500: Internal Server Error"),
        (403, {"imsx_codeMajor": "failure"}, "answered HTTP 403"),
        (200, b"{truncated", "no valid JSON"),
        (200, {"orgs": []}, "no 'users' list"),
        (200, [], "no 'users' list"),
    ],
)
def test_parse_page_refuses(status: int, body: object, says: str) -> None:
    with pytest.raises(SourceUnavailable, match=re.escape("https://sis.example/x")) as err:
        parse_page(response(status, body), "users")
    assert says in str(err.value)


@pytest.mark.parametrize(
    ("offset", "received", "limit", "total", "expected"),
    [
        (0, 100, 100, 250, 100),
        (200, 50, 100, 250, None),  # reached X-Total-Count
        (0, 50, 100, 250, 50),  # the server caps pages lower than asked: go on by count
        (0, 100, 100, None, 100),  # no count: a full page may have a next one
        (100, 30, 100, None, None),  # no count: a short page is the last
        (100, 0, 100, 500, None),  # an empty page ends it even if the count says more
    ],
)
def test_next_offset(
    offset: int, received: int, limit: int, total: int | None, expected: int | None
) -> None:
    assert next_offset(offset, received, limit, total) == expected


# -- rows ------------------------------------------------------------------------------------


def test_flatten_turns_json_into_csv_columns() -> None:
    ref = {"href": "…", "sourcedId": "5a", "type": "class"}
    assert flatten(
        {
            "sourcedId": "r1",
            "status": "active",
            "lineItem": {"href": "…", "sourcedId": "li", "type": "lineItem"},
            "student": {"sourcedId": "p1", "type": "user"},
            "class": ref,
            "score": 5.0,
            "textScore": "5-",
            "metadata": {"x": 1},
            "comment": None,
        }
    ) == {
        "sourcedId": "r1",
        "status": "active",
        "lineItemSourcedId": "li",
        "studentSourcedId": "p1",
        "classSourcedId": "5a",
        "score": "5.0",
        "textScore": "5-",
        "comment": "",
    }
    user = flatten(
        {
            "sourcedId": "u",
            "enabledUser": True,
            "grades": ["05", "06"],
            "agents": [{"sourcedId": "g1"}, {"sourcedId": "g2"}],
            "roles": [
                {"roleType": "secondary", "role": "teacher", "org": {"sourcedId": "s2"}},
                {"roleType": "primary", "role": "principal", "org": {"sourcedId": "s1"}},
            ],
            "userIds": [{"type": "snils", "identifier": "123"}],
        }
    )
    assert user == {
        "sourcedId": "u",
        "enabledUser": "true",
        "grades": "05,06",
        "agentSourcedIds": "g1,g2",
        "role": "administrator",
        "orgSourcedIds": "s2,s1",
        "userIds": "{snils:123}",
    }


def test_rows_from_items_reports_bad_items_and_keeps_the_rest() -> None:
    rows, problems = rows_from_items(
        [{"sourcedId": "a"}, "junk", {"title": "x"}, {"sourcedId": "b", "title": {"no": 1}},
         {"sourcedId": "c", "title": ["x", {"y": 1}]}],
        "categories",
        BASE,
        SOURCE,
    )  # fmt: skip
    # an object that is no GUIDRef (metadata, extensions) is left out, not a problem
    assert [r["sourcedId"] for r in rows] == ["a", "b"] and "title" not in rows[1]
    assert rows[0][gradebook.WHERE] == item_url(BASE, "categories", "a")
    collection = item_url(BASE, "categories")
    assert [(p.where, p.kind) for p in problems] == [
        (f"{collection} item 1", "invalid"),
        (f"{collection} item 2", "invalid"),
        (f"{collection}/c", "invalid"),
    ]
    assert "is a str, not an object" in problems[0].message
    assert "has no sourcedId" in problems[1].message


# -- the gradebook mapping ---------------------------------------------------------------------

CATEGORIES = [
    {"sourcedId": "c-test", "title": "Контрольная работа"},
    {"sourcedId": "c-hw", "title": "Домашнее задание"},
]
LINE_ITEMS = [
    {"sourcedId": "li-1", "title": "Контрольная №1", "assignDate": "2026-11-16T22:30:00Z",
     "dueDate": "2026-11-16", "classSourcedId": "5a", "categorySourcedId": "c-test",
     "resultValueMin": "1", "resultValueMax": "5"},
    {"sourcedId": "li-hw", "title": "§12", "description": "Математика: §12, упр. 3–5",
     "assignDate": "2026-11-20", "dueDate": "2026-11-24T00:00:00Z", "classSourcedId": "eng",
     "categorySourcedId": "c-hw"},
    {"sourcedId": "li-old", "status": "tobedeleted", "title": "x", "classSourcedId": "5a"},
]  # fmt: skip
SUBJECTS = {"5a": "", "eng": "Английский язык"}


def result(sourced_id: str, **fields: str) -> dict[str, str]:
    row = {"sourcedId": sourced_id, "lineItemSourcedId": "li-1", "studentSourcedId": "p1",
           "scoreStatus": "fully graded", "score": "5.0", "scoreDate": "2026-11-18"}  # fmt: skip
    return {**row, **fields}


def test_gradebook_mapping() -> None:
    results = [
        result("r1", comment=" Молодец "),
        result("r2", score="4.5", scoreDate=""),
        result("r3", textScore="5-", score="4.67"),
        result("r4", lineItemSourcedId="li-hw", score="", textScore="зачёт"),
        result("r5", score="", scoreStatus="not submitted"),  # nothing to show yet
        result("r6", status="tobedeleted"),
    ]
    marks, homework, problems = gradebook.items_from_gradebook(
        CATEGORIES, LINE_ITEMS, results, {"p1"}, SOURCE, SUBJECTS
    )
    assert problems == []
    base = Mark("r1", "p1", "5a", "Контрольная №1", "", "5", date(2026, 11, 18), "Молодец",
                "Контрольная работа")  # fmt: skip
    assert marks == [
        base,
        # 22:30 UTC is the next morning in Moscow
        attrs.evolve(base, source_id="r2", value="4.5", work_date=date(2026, 11, 17), comment=""),
        attrs.evolve(base, source_id="r3", value="5-", comment=""),
        Mark("r4", "p1", "eng", "§12", "Английский язык", "зачёт", date(2026, 11, 18),
             category="Домашнее задание"),
    ]  # fmt: skip
    assert homework == [
        Homework("li-hw", "eng", "Английский язык", "Математика: §12, упр. 3–5",
                 date(2026, 11, 24), date(2026, 11, 20)),
    ]  # fmt: skip


def test_gradebook_problems_skip_only_the_bad_items() -> None:
    results = [
        result("ok"),
        result("stranger", studentSourcedId="p9", **{gradebook.WHERE: "results.csv:3"}),
        result("orphan", lineItemSourcedId="li-9"),
        result("high", score="6"),
        result("low", score="0"),
        result("empty", score=""),
        result("undated", scoreDate="", lineItemSourcedId="li-nodate"),
        result("word", score="пять"),
        result("of-lost", lineItemSourcedId="li-lost"),  # quiet: its lineItem said it
        result("ok"),
    ]
    line_items = [
        *LINE_ITEMS,
        {"sourcedId": "li-nodate", "title": "x", "classSourcedId": "5a"},
        {"sourcedId": "li-lost", "title": "x", "classSourcedId": "9z"},
        {"sourcedId": "li-hw-bad", "title": "x", "classSourcedId": "5a",
         "categorySourcedId": "c-hw", "dueDate": "soon"},
        {"sourcedId": "li-cat", "title": "x", "classSourcedId": "5a", "categorySourcedId": "c-9"},
        {"sourcedId": "li-untitled", "title": "", "classSourcedId": "5a"},
    ]  # fmt: skip
    marks, homework, problems = gradebook.items_from_gradebook(
        CATEGORIES, line_items, results, {"p1"}, SOURCE, SUBJECTS
    )
    assert [m.source_id for m in marks] == ["ok"]
    assert [h.source_id for h in homework] == ["li-hw"]
    assert [(p.where, p.kind) for p in problems] == [
        ("li-lost", "unknown_reference"),
        ("li-hw-bad", "invalid"),
        ("li-cat", "unknown_reference"),
        ("li-untitled", "invalid"),
        ("results.csv:3", "unknown_reference"),
        ("orphan", "unknown_reference"),
        ("high", "out_of_range"),
        ("low", "out_of_range"),
        ("empty", "invalid"),
        ("undated", "invalid"),
        ("word", "invalid"),
        ("ok", "invalid"),  # used twice
    ]
    assert all(p.source == SOURCE for p in problems)
    assert "studentSourcedId 'p9' is not a pupil" in problems[4].message
    assert "score 6 is outside 1..5" in problems[6].message


@pytest.mark.parametrize(("score", "text"), [(5.0, "5"), (4.5, "4.5"), (None, "")])
def test_shown(score: float | None, text: str) -> None:
    assert gradebook.shown(score) == text


def test_problems_name_their_column_for_the_where_function() -> None:
    """A source can point at the cell: `where` gets each problem's row and the column it is
    about (the CSV source makes `results.csv:7:5` of them)."""
    results = [
        result("ok"),
        result("word", score="пять"),
        result("stranger", studentSourcedId="p9"),
        result("ok"),
    ]
    line_items = [*LINE_ITEMS, {"sourcedId": "li-untitled", "title": "", "classSourcedId": "5a"}]
    marks, _, problems = gradebook.items_from_gradebook(
        CATEGORIES,
        line_items,
        results,
        {"p1"},
        SOURCE,
        SUBJECTS,
        where=lambda row, column: f"{row['sourcedId']}/{column}",
    )
    assert [m.source_id for m in marks] == ["ok"]
    assert [p.where for p in problems] == [
        "li-untitled/title",
        "word/score",
        "stranger/studentSourcedId",
        "ok/sourcedId",
    ]
    assert problems[1].message == "score 'пять' is not a number such as 4 or 4.5"


# -- the roster zip ----------------------------------------------------------------------------


def demo_rows() -> dict[str, list[dict[str, str]]]:
    tables = {}
    for path in DEMO_ROSTER.glob("*.csv"):
        if path.name != "manifest.csv":
            with path.open(encoding="utf-8-sig", newline="") as f:
                tables[path.stem] = list(csv.DictReader(f))
    return tables


def without_origins(change: object) -> object:
    """A RosterImport with every record's origin (file:line) blanked."""

    def strip(value: object) -> object:
        if attrs.has(type(value)):
            fields = {
                f.name: None if f.name == "origin" else strip(getattr(value, f.name))
                for f in attrs.fields(cast(Any, type(value)))
                if f.init
            }
            return type(value)(**fields)
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        return value

    return strip(change)


def test_roster_zip_is_what_the_module_reads() -> None:
    tables = demo_rows()
    tables["users"].append({**tables["users"][0], "sourcedId": "gone", "status": "tobedeleted"})
    data = roster_zip(tables, SOURCE)
    parsed = parse_roster_zip(data, TODAY, "rest.zip")
    assert without_origins(parsed) == without_origins(parse_roster(DEMO_ROSTER, TODAY))
    assert "gone" not in parsed.people.upserts


def test_build_snapshot() -> None:
    tables = demo_rows()
    tables["categories"] = CATEGORIES
    tables["lineItems"] = [LINE_ITEMS[0]]
    tables["results"] = [result("r1", studentSourcedId="p-5a-1"),
                         result("r2", studentSourcedId="t-1")]  # fmt: skip
    snapshot = build_snapshot(tables, [], SOURCE)
    assert [m.source_id for m in snapshot.marks] == ["r1"]  # a teacher is no pupil
    assert [p.kind for p in snapshot.problems] == ["unknown_reference"]
    assert snapshot.complete and snapshot.roster_zip is not None
