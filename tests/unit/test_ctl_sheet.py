"""`sferumctl accounts sheet`: the printable onboarding cards, and the command against a stand-in
admin API."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from sferum_shared.adminapi import IssuedAccount
from synapse_sferum.ctl.deployment import public_base_url
from synapse_sferum.ctl.sheet import class_heading, render_sheet, sign_in_link
from tests.unit.test_ctl_adminapi import (  # noqa: F401  (api: the stand-in server fixture)
    FakeApi,
    api,
    deployment_at,
    run,
)

HOMESERVER = "https://school1.example.org"
ACCOUNTS = [
    IssuedAccount("s-1", "@ivanov.ivan:school1.example.org", "Tq7-x9Lm", "Иван Иванов", ("5А",)),
    IssuedAccount("s-22", "@li:school1.example.org", None, "Ли Вэй", ("5А",)),
    IssuedAccount(
        "s-<3>", "@petrova.anna:school1.example.org", "Zz8_kP4q", "Анна <b>Петрова</b>", ("5А",)
    ),
]
TEACHER = IssuedAccount(
    "t-1", "@ivanova.marina:school1.example.org", "Kk9-m2Pq", "Марина Иванова", ("5А", "6Б"), True
)


def render() -> str:
    return render_sheet(ACCOUNTS, heading="класс 5А", homeserver=HOMESERVER)


def test_cards() -> None:
    html = render()
    for account in ACCOUNTS:
        assert account.user_id in html
        assert account.person not in html.replace("s-&lt;3&gt;", "s-<3>")  # never the sourcedId
    assert "Иван Иванов" in html and html.count('<div class="classes">5А</div>') == 3
    assert "Tq7-x9Lm" in html and "Zz8_kP4q" in html
    assert html.count("Пароль выдан ранее") == 1
    assert html.count("<svg") == len(ACCOUNTS)
    assert html.count('class="card"') == len(ACCOUNTS)
    for label in ("Сервер", "Логин", "Пароль"):
        assert html.count(f"<dt>{label}</dt>") == len(ACCOUNTS)
    assert html.count(f"<dd>{HOMESERVER}</dd>") == len(ACCOUNTS)
    assert "Наведите камеру телефона" in html and "заполнятся сами" not in html


def test_escaping() -> None:
    html = render()
    assert "Анна &lt;b&gt;Петрова&lt;/b&gt;" in html
    assert "<b>" not in html and "s-<3>" not in html


def test_title_and_pages() -> None:
    html = render_sheet(ACCOUNTS * 5, heading="класс 6б", homeserver=HOMESERVER)
    assert "<title>Учётные записи: класс 6б</title>" in html
    assert "@page { size: A4;" in html
    # 15 cards: 8 rows of two, a page break after rows 3 and 6 (not after the last).
    assert html.count('<div class="row') == 8
    assert html.count("row page-break") == 2
    assert 'id="qr-path"' not in html  # ids stay unique


def test_empty_class() -> None:
    html = render_sheet([], heading="класс 5a", homeserver=HOMESERVER)
    assert "<svg" not in html and "В классе нет учеников" in html


def test_teachers_cards_come_on_a_sheet_of_their_own() -> None:
    html = render_sheet(
        [ACCOUNTS[0], TEACHER, ACCOUNTS[1]], heading="класс 5А", homeserver=HOMESERVER
    )
    families, staff = html.split('<div class="staff-sheet">')
    assert "Учётные записи: класс 5А" in families and "Марина Иванова" not in families
    assert "Иван Иванов" in families and "Ли Вэй" in families
    assert "Учителя и сотрудники: класс 5А" in staff and "Марина Иванова" in staff
    assert '<div class="classes">5А, 6Б</div>' in staff
    assert ".staff-sheet { break-before: page;" in html
    assert "staff-sheet" not in render().split("</style>")[1]  # no empty teachers' sheet


def test_the_qr_code_is_a_link_to_the_sign_in_help() -> None:
    assert sign_in_link(HOMESERVER + "/", "@li:x") == f"{HOMESERVER}/join#@li:x"


def test_the_heading_names_the_class_by_its_title() -> None:
    assert class_heading("5a", [ACCOUNTS[0], TEACHER]) == "класс 5А"
    assert class_heading("5a", []) == "класс 5a"
    assert class_heading("5a", [IssuedAccount("s-1", "@a:x", None)]) == "класс 5a"


def test_public_base_url() -> None:
    listener = {"type": "http", "port": 8008, "resources": [{"names": ["client"]}]}
    assert public_base_url({"public_baseurl": "https://s.example/", "listeners": [listener]}) == (
        "https://s.example"
    )
    assert public_base_url({"listeners": [listener]}) == "http://127.0.0.1:8008"


def test_command(
    tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    fake: FakeApi = request.getfixturevalue("api")
    folder = deployment_at(tmp_path, fake.port)
    fake.body = {
        "accounts": [
            {
                "person": "s-1",
                "user_id": "@ivanov.ivan:localhost",
                "password": "Tq7-x9Lm",
                "name": "Иван Иванов",
                "classes": ["5А"],
                "staff": False,
            },
            {"person": "s-22", "user_id": "@li:localhost", "password": None},  # an older server
        ]
    }
    out_file = tmp_path / "5a.html"
    argv = ["accounts", "sheet", str(folder), "--class", "5a", "--out", str(out_file)]
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (0, f"wrote {out_file} (2 cards)\n", "")
    assert json.loads(fake.requests[0][2]) == {"class": "5a"}
    html = out_file.read_text(encoding="utf-8")
    assert "@ivanov.ivan:localhost" in html and "Tq7-x9Lm" in html
    assert "Иван Иванов" in html and "<title>Учётные записи: класс 5a</title>" in html
    assert f"http://127.0.0.1:{fake.port}" in html  # init's default public_baseurl
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600

    # An existing sheet may be the only copy of its passwords: refused before any request.
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "")
    assert "exists" in err and len(fake.requests) == 1
    assert "Tq7-x9Lm" in out_file.read_text(encoding="utf-8")


def test_command_unknown_class(
    tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    fake: FakeApi = request.getfixturevalue("api")
    folder = deployment_at(tmp_path, fake.port)
    fake.status, fake.body = 404, {"errcode": "M_NOT_FOUND", "error": "No class '9z'"}
    out_file = tmp_path / "9z.html"
    code, out, err = run(
        capsys, "accounts", "sheet", str(folder), "--class", "9z", "--out", str(out_file)
    )
    assert (code, out, err) == (1, "", "accounts sheet: No class '9z' (M_NOT_FOUND)\n")
    assert not out_file.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["accounts", "sheet", "DIR", "--out", "x.html"],
        ["accounts", "sheet", "DIR", "--class", "5a"],
        ["accounts", "sheet", "DIR", "--person", "p", "--out", "x.html"],
    ],
)
def test_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(capsys, *argv)
    assert exit_info.value.code == 2
