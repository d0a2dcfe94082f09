"""The admin API's requests the bridge and the SFU make, and how their answers are read
(sferumctl's own are in test_ctl_adminapi.py)."""

from __future__ import annotations

import json

import pytest

from sferum_shared.adminapi import (
    PREFIX,
    AdminApi,
    Refused,
    Unexpected,
    parse_object,
    parse_rooms,
)
from sferum_shared.http import Request, Response
from sferum_shared.ids import RoomId, UserId

API = AdminApi(f"http://127.0.0.1:8008{PREFIX}", "s3cret-s3cret-s3cret")


def reply(status: int, body: object) -> Response:
    return Response(status, json.dumps(body).encode())


@pytest.mark.parametrize(
    ("request_", "path", "body"),
    [
        (API.who({"person": "p-1"}), "who", {"person": "p-1"}),
        (
            API.rtc_facts(UserId("@a:s"), RoomId("!r:s")),
            "rtc-facts",
            {"user_id": "@a:s", "room_id": "!r:s"},
        ),
        (API.rooms(["diary-p-1"]), "rooms", {"aliases": ["diary-p-1"]}),
    ],
)
def test_requests(request_: Request, path: str, body: object) -> None:
    assert request_.method == "POST"
    assert request_.url == f"{API.url}/{path}"
    assert request_.headers["Authorization"] == f"Bearer {API.secret}"
    assert json.loads(request_.body) == body


def test_answers() -> None:
    assert parse_rooms(reply(200, {"rooms": {"diary-p-1": "!r:s"}})) == {"diary-p-1": "!r:s"}
    assert parse_object(reply(200, {"person": None})) == {"person": None}


def test_a_refusal_carries_status_errcode_and_problems() -> None:
    body = {
        "errcode": "M_INVALID_PARAM",
        "error": "bad roster",
        "ru.sferum.problems": [{"file": "users.csv", "line": 2, "column": 3, "message": "x"}],
    }
    with pytest.raises(Refused) as raised:
        parse_object(reply(400, body))
    assert (raised.value.status, raised.value.errcode, raised.value.error) == (
        400,
        "M_INVALID_PARAM",
        "bad roster",
    )
    assert [str(p) for p in raised.value.problems] == ["users.csv:2:3: x"]
    with pytest.raises(Refused) as proxy:
        parse_rooms(Response(502, b"<html>Bad gateway</html>"))
    assert proxy.value.error == "<html>Bad gateway</html>"


@pytest.mark.parametrize("body", [{}, {"rooms": []}, "rooms"])
def test_a_200_of_the_wrong_shape_is_unexpected(body: object) -> None:
    with pytest.raises(Unexpected):
        parse_rooms(reply(200, body))
    with pytest.raises(Unexpected):
        parse_object(Response(200, b"not json"))
