"""The admin API client: pure request/response handling, and the CLI against a stand-in server."""

from __future__ import annotations

import http.server
import io
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from sferum_shared.adminapi import (
    PREFIX as API_PREFIX,
)
from sferum_shared.adminapi import (
    AdminApi,
    IssuedAccount,
    PostedArticle,
    Problem,
    parse_accounts,
    parse_news_post,
    parse_reconcile,
    parse_reconcile_status,
    parse_roster_counts,
    parse_upgraded_room,
)
from sferum_shared.http import Response
from synapse_sferum.ctl import reconcile as ctl_reconcile
from synapse_sferum.ctl.adminapi import Rejected, parsed
from synapse_sferum.ctl.errors import CtlError
from synapse_sferum.ctl.main import main
from synapse_sferum.ctl.roster import roster_zip

API = AdminApi(f"http://127.0.0.1:8008{API_PREFIX}", "s3cret-s3cret-s3cret")
PREFIX = "http://127.0.0.1:8008/_synapse/client/sferum/admin/v1"
COUNTS = {
    "orgs": {"created": 1, "updated": 0, "deleted": 0},
    "people": {"created": 22, "updated": 3, "deleted": 1},
    "demographics": {"created": 14, "updated": 0, "deleted": 0},
    "classes": {"created": 3, "updated": 0, "deleted": 0},
    "enrollments": {"created": 30, "updated": 0, "deleted": 2},
}
PROBLEMS = [
    {"file": "users.csv", "line": 4, "column": 6, "message": "unknown role 'wizard'"},
    {"file": "manifest.csv", "line": None, "column": None, "message": "file.users missing"},
]


def reply(status: int, body: Any) -> Response:
    return Response(status, json.dumps(body).encode())


# --- requests ------------------------------------------------------------------------------


def test_roster_request() -> None:
    request = API.import_roster(b"PK..", name="r.zip", dry_run=False)
    assert (request.method, request.url, request.body) == (
        "POST",
        f"{PREFIX}/roster?name=r.zip",
        b"PK..",
    )
    assert request.headers == {
        "Authorization": "Bearer s3cret-s3cret-s3cret",
        "Content-Type": "application/zip",
    }
    dry = API.import_roster(b"", name="r.zip", dry_run=True)
    assert dry.url == f"{PREFIX}/roster?name=r.zip&dry_run=true"


def test_accounts_requests() -> None:
    by_person = API.issue_accounts(persons=["p1", "p2"])
    assert by_person.url == f"{PREFIX}/accounts"
    assert by_person.headers["Content-Type"] == "application/json"
    assert json.loads(by_person.body) == {"persons": ["p1", "p2"]}
    assert json.loads(API.issue_accounts(class_id="5a").body) == {"class": "5a"}


def test_news_post_request() -> None:
    request = API.news_post(author="staff-1", key="k", html="<p>x</p>", pin=True)
    assert request.url == f"{PREFIX}/news-post"
    body = {"author": "staff-1", "key": "k", "html": "<p>x</p>", "pin": True}
    assert json.loads(request.body) == body
    titled = API.news_post(author="t-1", key="k", html="x", title="T", school="school-1")
    assert json.loads(titled.body) == {
        "author": "t-1",
        "key": "k",
        "html": "x",
        "pin": False,
        "title": "T",
        "school": "school-1",
    }


# --- responses -----------------------------------------------------------------------------


def test_roster_counts() -> None:
    assert parsed(parse_roster_counts, reply(200, {"counts": COUNTS, "dry_run": False})) == COUNTS


def test_invalid_roster_carries_its_problems() -> None:
    body = {
        "errcode": "M_INVALID_PARAM",
        "error": "The roster has 2 problem(s)",
        "ru.sferum.problems": PROBLEMS,
    }
    with pytest.raises(Rejected) as raised:
        parsed(parse_roster_counts, reply(400, body))
    assert raised.value.exit_code == 1
    assert raised.value.message == "The roster has 2 problem(s) (M_INVALID_PARAM)"
    assert raised.value.problems == (
        Problem("users.csv", 4, 6, "unknown role 'wizard'"),
        Problem("manifest.csv", None, None, "file.users missing"),
    )
    assert raised.value.details == (
        "users.csv:4:6: unknown role 'wizard'",
        "manifest.csv: file.users missing",
    )


def test_accounts() -> None:
    body = {
        "accounts": [
            {"person": "s-1", "user_id": "@ivanov:localhost", "password": "pw-1"},
            {"person": "s-2", "user_id": "@petrova:localhost", "password": None},
        ]
    }
    assert parsed(parse_accounts, reply(200, body)) == [
        IssuedAccount("s-1", "@ivanov:localhost", "pw-1"),
        IssuedAccount("s-2", "@petrova:localhost", None),
    ]


@pytest.mark.parametrize(
    ("response", "exit_code", "fragment"),
    [
        (
            reply(404, {"errcode": "M_NOT_FOUND", "error": "No class 9z"}),
            1,
            "No class 9z (M_NOT_FOUND)",
        ),
        (
            reply(401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Bad token"}),
            2,
            "refused the admin API secret (401 M_UNKNOWN_TOKEN Bad token)",
        ),
        (reply(403, {"errcode": "M_FORBIDDEN", "error": "no"}), 2, "refused the admin API"),
        (
            reply(500, {"errcode": "M_UNKNOWN", "error": "Internal server error"}),
            2,
            "the server failed (500 M_UNKNOWN Internal server error); see its log",
        ),
        (
            Response(502, b"<html>Bad gateway</html>"),
            2,
            "the server failed (502 <html>Bad gateway</html>)",
        ),
        (
            reply(404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}),
            2,
            "does not serve /_synapse/client/sferum/admin/v1: is synapse_sferum.SferumModule",
        ),
        (reply(200, {"accounts": [{"person": "s-1"}]}), 2, "unexpected answer"),
        (Response(200, b"not json"), 2, "unexpected answer"),
    ],
)
def test_errors(response: Response, exit_code: int, fragment: str) -> None:
    with pytest.raises(CtlError) as raised:
        parsed(parse_accounts, response)
    assert raised.value.exit_code == exit_code
    assert fragment in raised.value.message


# --- roster bundles ------------------------------------------------------------------------


def test_a_folder_is_zipped_with_its_files_at_the_root(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("sourcedId\n")
    (tmp_path / "manifest.csv").write_text("propertyName,value\n")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "orgs.csv").write_text("")
    with zipfile.ZipFile(io.BytesIO(roster_zip(tmp_path))) as bundle:
        assert bundle.namelist() == ["manifest.csv", "users.csv"]
        assert bundle.read("users.csv") == b"sourcedId\n"


def test_a_zip_is_sent_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "roster.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("users.csv", "x")
    assert roster_zip(path) == path.read_bytes()


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("empty", None, "no .csv files in this folder"),
        ("roster.zip", b"not a zip", "not a zip file"),
        ("missing", False, "no such file or folder"),
    ],
)
def test_bad_roster_paths(
    tmp_path: Path, name: str, content: bytes | bool | None, fragment: str
) -> None:
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(CtlError, match=fragment):
        roster_zip(path)


# --- the CLI against a stand-in admin API ----------------------------------------------------


@attrs.define
class FakeApi:
    """Answers every POST with `status` and `body`, and records what it was sent."""

    port: int
    status: int = 200
    body: Any = attrs.field(factory=dict)
    then: list[Any] = attrs.field(factory=list)  # bodies of the next answers, before `body`
    requests: list[tuple[str, dict[str, str], bytes]] = attrs.field(factory=list)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            fake.requests.append((self.path, dict(self.headers), self.rfile.read(length)))
            payload = json.dumps(fake.then.pop(0) if fake.then else fake.body).encode()
            self.send_response(fake.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def deployment_at(tmp_path: Path, port: int) -> Path:
    folder = tmp_path / "d"
    assert main(["init", str(folder), "--server-name", "localhost", "--http-port", str(port)]) == 0
    return folder


@pytest.fixture
def roster(tmp_path: Path) -> Path:
    folder = tmp_path / "roster"
    folder.mkdir()
    (folder / "users.csv").write_text("sourcedId,role\nt-1,teacher\n")
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_roster_import(
    tmp_path: Path, api: FakeApi, roster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = deployment_at(tmp_path, api.port)
    api.body = {"counts": COUNTS, "dry_run": False}
    code, out, err = run(capsys, "roster", "import", str(folder), str(roster))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "kind          created  updated  deleted",
        "orgs                1        0        0",
        "people             22        3        1",
        "demographics       14        0        0",
        "classes             3        0        0",
        "enrollments        30        0        2",
    ]
    [(path, headers, body)] = api.requests
    assert path == "/_synapse/client/sferum/admin/v1/roster?name=roster.zip"
    secret = (folder / "secrets.yaml").read_text().split("admin_api_secret: ")[1].split()[0]
    assert headers["Authorization"] == f"Bearer {secret}"
    assert headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(body)) as bundle:
        assert bundle.namelist() == ["users.csv"]


def test_roster_dry_run(
    tmp_path: Path, api: FakeApi, roster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = deployment_at(tmp_path, api.port)
    api.body = {"counts": COUNTS, "dry_run": True}
    code, out, _ = run(capsys, "roster", "import", str(folder), str(roster), "--dry-run")
    assert code == 0
    assert out.splitlines()[-1] == "dry run: nothing was stored"
    path = api.requests[0][0]
    assert path == "/_synapse/client/sferum/admin/v1/roster?name=roster.zip&dry_run=true"


def test_invalid_roster_prints_each_problem(
    tmp_path: Path, api: FakeApi, roster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = deployment_at(tmp_path, api.port)
    api.status, api.body = (
        400,
        {"errcode": "M_INVALID_PARAM", "error": "2 problems", "ru.sferum.problems": PROBLEMS},
    )
    code, out, err = run(capsys, "roster", "import", str(folder), str(roster))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "roster import: 2 problems (M_INVALID_PARAM)",
        "users.csv:4:6: unknown role 'wizard'",
        "manifest.csv: file.users missing",
    ]


def test_refused_secret(
    tmp_path: Path, api: FakeApi, roster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = deployment_at(tmp_path, api.port)
    api.status, api.body = 401, {"errcode": "M_UNAUTHORIZED", "error": "Bad secret"}
    code, _, err = run(capsys, "roster", "import", str(folder), str(roster))
    assert code == 2
    assert "refused the admin API secret" in err


def test_server_not_running(
    tmp_path: Path, roster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = deployment_at(tmp_path, port)  # nothing listens there
    code, _, err = run(capsys, "roster", "import", str(folder), str(roster))
    assert code == 2
    assert err.splitlines() == [
        f"roster import: cannot reach the server at http://127.0.0.1:{port}: "
        "[Errno 111] Connection refused",
        f"is the server running? try: sferumctl start {folder}",
    ]


ISSUED = {
    "accounts": [
        {"person": "s-1", "user_id": "@ivanov.ivan:localhost", "password": "Tq7-x9Lm"},
        {"person": "s-22", "user_id": "@li:localhost", "password": None},
    ]
}


def test_accounts_by_class_as_text(
    tmp_path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = deployment_at(tmp_path, api.port)
    api.body = ISSUED
    code, out, _ = run(capsys, "accounts", "issue", str(folder), "--class", "5a")
    assert code == 0
    assert out.splitlines() == [
        "person  user ID                 password",
        "s-1     @ivanov.ivan:localhost  Tq7-x9Lm",
        "s-22    @li:localhost           (already linked)",
    ]
    [(path, headers, body)] = api.requests
    assert path == "/_synapse/client/sferum/admin/v1/accounts"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"class": "5a"}


def test_accounts_by_person_as_json(
    tmp_path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = deployment_at(tmp_path, api.port)
    api.body = ISSUED
    code, out, _ = run(
        capsys,
        "accounts",
        "issue",
        str(folder),
        "--person",
        "s-1",
        "s-22",
        "--person",
        "s-3",
        "--format",
        "json",
    )
    assert code == 0
    # What a card prints comes along, empty where the server named nothing.
    blank = {"name": "", "classes": [], "staff": False}
    assert json.loads(out) == [{**a, **blank} for a in ISSUED["accounts"]]
    assert json.loads(api.requests[0][2]) == {"persons": ["s-1", "s-22", "s-3"]}


def test_accounts_reset_as_a_table_and_as_cards(
    tmp_path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = deployment_at(tmp_path, api.port)
    api.body = {"accounts": [ISSUED["accounts"][0]]}
    code, out, _ = run(capsys, "accounts", "reset", str(folder), "--person", "s-1")
    assert code == 0
    assert out.splitlines()[1] == "s-1     @ivanov.ivan:localhost  Tq7-x9Lm"
    [(path, _, body)] = api.requests
    assert path == "/_synapse/client/sferum/admin/v1/accounts-reset"
    assert json.loads(body) == {"persons": ["s-1"]}
    sheet = tmp_path / "cards.html"
    code, out, _ = run(capsys, "accounts", "reset", str(folder), "--person", "s-1", "--out",
                       str(sheet))  # fmt: skip
    assert (code, out) == (0, f"wrote {sheet} (1 cards)\n")
    assert "новые пароли" in sheet.read_text() and "Tq7-x9Lm" in sheet.read_text()


def test_accounts_for_an_unknown_class(
    tmp_path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = deployment_at(tmp_path, api.port)
    api.status, api.body = 404, {"errcode": "M_NOT_FOUND", "error": "No class '9z'"}
    code, out, err = run(capsys, "accounts", "issue", str(folder), "--class", "9z")
    assert (code, out, err) == (1, "", "accounts issue: No class '9z' (M_NOT_FOUND)\n")


@pytest.mark.parametrize(
    "argv",
    [
        ["accounts", "issue", "DIR"],
        ["accounts", "issue", "DIR", "--class", "5a", "--person", "p"],
        ["accounts", "issue", "DIR", "--class", "5a", "--format", "csv"],
        ["accounts", "reset", "DIR"],
        ["roster", "import", "DIR"],
    ],
)
def test_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert "usage: sferumctl" in capsys.readouterr().err


def test_reconcile_request_and_report() -> None:
    request = API.reconcile()
    assert (request.method, request.url) == ("POST", f"{PREFIX}/reconcile")
    report = {"rooms_created": 2, "state_updates": 1, "joined": 5, "removed": 0, "failures": 0}
    assert parsed(parse_reconcile, reply(200, {"reconcile": report})) == report
    with pytest.raises(CtlError):
        parsed(parse_reconcile, reply(200, {"reconcile": "done"}))
    status = API.reconcile_status(3)
    assert (status.method, status.url) == ("POST", f"{PREFIX}/reconcile-status")
    assert json.loads(status.body or b"") == {"run": 3}


PROGRESS = {"run": 2, "started_ms": 5, "finished_ms": None, "rooms_total": 9, "rooms_done": 4}
REPORT = {"rooms_created": 2, "state_updates": 1, "joined": 5, "removed": 0, "failures": 0}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"run": 3, "state": "queued"}, (3, "queued", {}, None)),
        ({"run": 2, "state": "running", "progress": PROGRESS}, (2, "running", PROGRESS, None)),
        (
            {"run": 2, "state": "finished", "progress": PROGRESS, "reconcile": REPORT},
            (2, "finished", PROGRESS, REPORT),
        ),
    ],
)
def test_reconcile_status(body: dict[str, Any], expected: tuple[Any, ...]) -> None:
    status = parsed(parse_reconcile_status, reply(200, body))
    assert (status.run, status.state, status.progress, status.report) == expected
    assert status.finished == (expected[1] == "finished")


@pytest.mark.parametrize(
    "body",
    [
        {"run": "2", "state": "running"},
        {"run": 2, "state": "sleeping"},
        {"run": 2, "state": "running", "progress": {"rooms_done": "4"}},
        {"run": 2, "state": "finished", "progress": PROGRESS},  # finished without its report
    ],
)
def test_a_bad_reconcile_status_is_unexpected(body: dict[str, Any]) -> None:
    with pytest.raises(CtlError, match="reconcile"):
        parsed(parse_reconcile_status, reply(200, body))


UPGRADED = {
    "room_id": "!old:localhost",
    "replacement_room": "!new:localhost",
    "version": "11",
    "kind": "news",
    "scope": "5a",
}


def test_rooms_upgrade_request_and_answer() -> None:
    request = API.upgrade_room("#news-5a:localhost", None)
    assert (request.method, request.url) == ("POST", f"{PREFIX}/rooms-upgrade")
    assert json.loads(request.body or b"") == {"room": "#news-5a:localhost"}
    assert json.loads(API.upgrade_room("!r:s", "11").body or b"") == {
        "room": "!r:s",
        "version": "11",
    }
    upgraded = parsed(parse_upgraded_room, reply(200, UPGRADED))
    assert (upgraded.room_id, upgraded.replacement_room, upgraded.version) == (
        "!old:localhost",
        "!new:localhost",
        "11",
    )
    with pytest.raises(CtlError):
        parsed(parse_upgraded_room, reply(200, {**UPGRADED, "replacement_room": None}))


def test_rooms_upgrade_says_what_became_of_the_room(
    tmp_path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = deployment_at(tmp_path, api.port)
    api.body = UPGRADED
    code, out, err = run(
        capsys, "rooms", "upgrade", str(folder), "#news-5a:localhost", "--version", "11"
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "news 5a: !old:localhost is now !new:localhost (room version 11)"
    [(path, _, body)] = api.requests
    assert path == f"{API_PREFIX}/rooms-upgrade"
    assert json.loads(body) == {"room": "#news-5a:localhost", "version": "11"}


@pytest.mark.parametrize(
    ("status", "errcode", "error"),
    [
        (404, "M_NOT_FOUND", "there is no room #nope:localhost on this server"),
        (400, "M_INVALID_PARAM", "#nope:localhost is not a room the platform made"),
        (400, "M_UNSUPPORTED_ROOM_VERSION", "room version '99' is not one this server knows"),
    ],
)
def test_rooms_upgrade_refused(
    tmp_path: Path,
    api: FakeApi,
    capsys: pytest.CaptureFixture[str],
    status: int,
    errcode: str,
    error: str,
) -> None:
    folder = deployment_at(tmp_path, api.port)
    api.status, api.body = status, {"errcode": errcode, "error": error}
    code, out, err = run(capsys, "rooms", "upgrade", str(folder), "#nope:localhost")
    assert (code, out, err) == (1, "", f"rooms upgrade: {error} ({errcode})\n")
POSTED = {
    "org_id": "school-1",
    "room_id": "!news:localhost",
    "event_id": "$article",
    "author": "@smirnova.olga:localhost",
    "action": "posted",
    "sent": "$article",
    "pinned": True,
    "dropped": ["script"],
}


def test_news_post_answer() -> None:
    assert parsed(parse_news_post, reply(200, POSTED)) == PostedArticle(
        org_id="school-1",
        room_id="!news:localhost",
        event_id="$article",
        author="@smirnova.olga:localhost",
        action="posted",
        sent="$article",
        pinned=True,
        dropped=("script",),
    )
    unchanged = parsed(
        parse_news_post, reply(200, {**POSTED, "action": "unchanged", "sent": None})
    )
    assert (unchanged.action, unchanged.sent) == ("unchanged", None)
    for wrong in ({"action": "deleted"}, {"sent": 1}, {"dropped": "script"}):
        with pytest.raises(CtlError, match="unexpected answer"):
            parsed(parse_news_post, reply(200, {**POSTED, **wrong}))


def test_news_post(tmp_path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    folder = deployment_at(tmp_path, api.port)
    article = tmp_path / "open-lessons.html"
    article.write_text("<h1>Открытые уроки</h1>", encoding="utf-8")
    api.body = POSTED
    code, out, _ = run(
        capsys, "news", "post", str(folder), str(article), "--author", "staff-1", "--pin"
    )
    assert code == 0 and "posted open-lessons.html" in out and "pinned in the school news" in out
    [(path, _, body)] = api.requests
    assert path == "/_synapse/client/sferum/admin/v1/news-post"
    assert json.loads(body) == {
        "author": "staff-1",
        "key": "open-lessons",
        "html": "<h1>Открытые уроки</h1>",
        "pin": True,
    }
    api.status, api.body = 400, {"errcode": "M_INVALID_PARAM", "error": "'p-1' may not post"}
    code, _, err = run(
        capsys, "news", "post", str(folder), str(article), "--author", "p-1", "--key", "x"
    )
    assert (code, err) == (1, "news post: 'p-1' may not post (M_INVALID_PARAM)\n")
    assert json.loads(api.requests[-1][2])["key"] == "x"
    code, _, err = run(
        capsys, "news", "post", str(folder), str(tmp_path / "none.html"), "--author", "staff-1"
    )
    assert code == 1 and "none.html: cannot read the article" in err
    assert len(api.requests) == 2  # nothing sent for a file that cannot be read


def test_reconcile_follows_its_run_to_the_report(
    tmp_path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """Asked during run 1, the CLI waits for run 2, printing progress as it changes."""
    monkeypatch.setattr(ctl_reconcile, "POLL_SECONDS", 0)
    folder = deployment_at(tmp_path, api.port)
    first = {**PROGRESS, "run": 1, "joined": 7}
    api.then = [
        {"run": 2, "state": "queued", "progress": first},
        {"run": 2, "state": "queued", "progress": first},
        {"run": 2, "state": "running", "progress": {**PROGRESS, "joined": 1}},
    ]
    api.body = {
        "run": 2,
        "state": "finished",
        "progress": {**PROGRESS, "finished_ms": 9},
        "reconcile": {**REPORT, "failures": 1},
    }
    code, out, err = run(capsys, "reconcile", str(folder))
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        "run 2: queued, after run 1 (rooms 4/9, joined 7, removed 0, failures 0)",
        "run 2: rooms 4/9, joined 1, removed 0, failures 0",
        "run 2: finished",
        "change         count",
        "rooms_created      2",
        "state_updates      1",
        "joined             5",
        "removed            0",
        "failures           1",
        "some changes failed; the server's log says why",
    ]
    paths = [path.rsplit("/", 1)[1] for path, _, _ in api.requests]
    assert paths == ["reconcile", *["reconcile-status"] * 3]
    assert {json.loads(body)["run"] for _, _, body in api.requests[1:]} == {2}


def test_reconcile_no_wait_only_starts_the_run(
    tmp_path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = deployment_at(tmp_path, api.port)
    api.body = {"run": 4, "state": "running", "progress": {**PROGRESS, "run": 4}}
    code, out, err = run(capsys, "reconcile", str(folder), "--no-wait")
    assert (code, err) == (0, "")
    assert out.splitlines() == ["run 4: rooms 4/9, joined 0, removed 0, failures 0"]
    assert len(api.requests) == 1
