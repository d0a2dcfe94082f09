"""The auth routes (sfu.authservice) against a fake homeserver and module admin API, and the
SFU config parser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sferum_shared import Clock
from sferum_shared.config import ConfigError
from sfu import tokens
from sfu.authservice import AuthService, sfu_url_for
from sfu.config import parse_config
from sfu.edge import relay_token
from sfu.grants import CAMERA, MICROPHONE, Grant

SERVER = "school.test"
JWT_SECRET = "j" * 40
ADMIN_SECRET = "admin-secret"
NOW = 1_760_000_000
ROOM = "!lesson:school.test"
TEACHER = {"roles": ["teacher"], "org_ids": ["school-1"], "teacher_class_ids": ["5a"]}
USERS = {"tok-teacher": "@teacher:school.test", "tok-other": "@x:elsewhere.test"}


async def fake_backend() -> web.Application:
    async def userinfo(request: web.Request) -> web.Response:
        sub = USERS.get(request.query.get("access_token", ""))
        if sub is None:
            return web.json_response({"errcode": "M_UNKNOWN_TOKEN"}, status=401)
        return web.json_response({"sub": sub})

    async def rtc_facts(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {ADMIN_SECRET}":
            return web.json_response({"errcode": "M_UNAUTHORIZED"}, status=401)
        body = await request.json()
        known = body["room_id"] == ROOM
        return web.json_response(
            {
                "room_kind": "lesson" if known else None,
                "room_scope": "5a" if known else None,
                "membership": "join" if known else None,
                "member": TEACHER if body["user_id"] == "@teacher:school.test" else None,
            }
        )

    app = web.Application()
    app.router.add_get("/_matrix/federation/v1/openid/userinfo", userinfo)
    app.router.add_post("/admin/rtc-facts", rtc_facts)
    return app


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    backend = TestServer(await fake_backend())
    await backend.start_server()
    base = str(backend.make_url("")).rstrip("/")
    config = parse_config(
        {
            "server_name": SERVER,
            "homeserver_url": base,
            "admin_api_url": f"{base}/admin",
            "admin_api_secret": ADMIN_SECRET,
            "jwt_secret": JWT_SECRET,
            "sfu_url": "wss://sfu.school.test",
        }
    )
    service = AuthService(config, Clock(lambda: NOW))
    async with TestClient(TestServer(service.app())) as test_client:
        yield test_client
    await backend.close()


def openid(token: str = "tok-teacher", server: str = SERVER) -> dict[str, Any]:
    return {
        "access_token": token,
        "token_type": "Bearer",
        "matrix_server_name": server,
        "expires_in": 3600,
    }


def member(member_id: str, user_id: str, device_id: str = "D") -> dict[str, str]:
    return {"id": member_id, "claimed_user_id": user_id, "claimed_device_id": device_id}


def get_token_body(**over: Any) -> dict[str, Any]:
    body = {
        "room_id": ROOM,
        "slot_id": "m.call#ROOM",
        "openid_token": openid(),
        "member": member("m1", "@teacher:school.test"),
    }
    return {**body, **over}


async def test_get_token_gives_url_and_jwt(client: TestClient[Any, Any]) -> None:
    response = await client.post("/get_token", json=get_token_body())
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"url", "jwt"} and body["url"] == "wss://sfu.school.test"
    room = tokens.room_name(ROOM, "m.call#ROOM")
    claims = tokens.verify(body["jwt"], JWT_SECRET, room, NOW)
    assert claims["sub"] == tokens.identity("@teacher:school.test", "D", "m1")
    assert claims["video"]["canPublishSources"] == ["camera", "microphone", "screen_share"]
    assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_legacy_sfu_get(client: TestClient[Any, Any]) -> None:
    body = {"room": ROOM, "openid_token": openid(), "device_id": "D"}
    response = await client.post("/sfu/get", json=body)
    assert response.status == 200
    claims = tokens.verify((await response.json())["jwt"], JWT_SECRET, tokens.room_name(ROOM), NOW)
    assert claims["sub"] == "@teacher:school.test:D"


@pytest.mark.parametrize(
    ("body", "status", "errcode", "reason"),
    [
        (get_token_body(openid_token=openid("garbage")), 401, "M_UNAUTHORIZED", "openid_rejected"),
        (
            get_token_body(openid_token=openid(server="elsewhere.test")),
            401,
            "M_UNAUTHORIZED",
            "other_server",
        ),
        (get_token_body(openid_token=openid("tok-other")), 401, "M_UNAUTHORIZED", "other_server"),
        (
            get_token_body(member=member("m", "@pupil:school.test")),
            401,
            "M_UNAUTHORIZED",
            "claimed_user_mismatch",
        ),
        (get_token_body(room_id="!chat:school.test"), 403, "M_FORBIDDEN", "no_calls_in_room"),
        (get_token_body(extra=1), 400, "M_BAD_JSON", None),
        (get_token_body(slot_id=""), 400, "M_BAD_JSON", None),
        (get_token_body(member={"id": "m"}), 400, "M_BAD_JSON", None),
        (get_token_body(delay_id="d", delay_timeout=5), 400, "M_BAD_JSON", None),
        (get_token_body(room_id="#alias:school.test"), 400, "M_BAD_JSON", None),
    ],
)
async def test_refusals_are_matrix_errors(
    client: TestClient[Any, Any],
    body: dict[str, Any],
    status: int,
    errcode: str,
    reason: str | None,
) -> None:
    response = await client.post("/get_token", json=body)
    answer = await response.json()
    assert (response.status, answer["errcode"]) == (status, errcode), answer
    assert answer["error"]
    if reason:
        assert answer["ru.sferum.reason"] == f"ru.sferum.sfu_{reason}"
    assert "jwt" not in answer


async def test_a_delegated_delayed_leave_rides_in_the_token(client: TestClient[Any, Any]) -> None:
    delegation = {
        "delay_id": "syd_x",
        "delay_timeout": 8000,
        "delay_cs_api_url": "https://school.test",
    }
    response = await client.post("/get_token", json=get_token_body(**delegation))
    assert response.status == 200, await response.text()
    room = tokens.room_name(ROOM, "m.call#ROOM")
    claims = tokens.verify((await response.json())["jwt"], JWT_SECRET, room, NOW)
    assert claims["ru.sferum.delayed_leave"] == {"delay_id": "syd_x", "timeout_ms": 8000}
    legacy = {"room": ROOM, "openid_token": openid(), "device_id": "D", **delegation}
    assert (await client.post("/sfu/get", json=legacy)).status == 200


async def test_not_json(client: TestClient[Any, Any]) -> None:
    response = await client.post("/get_token", data=b"{nope")
    assert response.status == 400
    assert (await response.json())["errcode"] == "M_NOT_JSON"


async def test_legacy_needs_device(client: TestClient[Any, Any]) -> None:
    response = await client.post("/sfu/get", json={"room": ROOM, "openid_token": openid()})
    assert response.status == 400


async def test_preflight(client: TestClient[Any, Any]) -> None:
    response = await client.options("/get_token")
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# -- config -----------------------------------------------------------------------------------

GOOD = {
    "server_name": SERVER,
    "homeserver_url": "http://127.0.0.1:8008/",
    "admin_api_url": "http://127.0.0.1:8008/_synapse/client/sferum/admin/v1",
    "admin_api_secret": ADMIN_SECRET,
    "jwt_secret": JWT_SECRET,
    "sfu_url": "https://sfu.school.test",
}


def test_config_parses_with_defaults() -> None:
    config = parse_config(GOOD)
    assert config.homeserver_url == "http://127.0.0.1:8008"
    assert config.token_ttl_seconds == 3600 and config.http_port == 8010
    assert JWT_SECRET not in repr(config)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"jwt_secret": "short"}, "jwt_secret"),
        ({"homeserver_url": "localhost"}, "homeserver_url"),
        ({"sfu_url": "ftp://x"}, "sfu_url"),
        ({"token_ttl_seconds": 7200}, "token_ttl_seconds"),
        ({"token_ttl_seconds": True}, "token_ttl_seconds"),
        ({"http": {"port": 0}}, "http.port"),
        ({"http": {"host": "x"}}, "http.host"),
        ({"typo": 1}, "typo"),
        ({"server_name": ""}, "server_name"),
        ({"origin_url": "http://origin:8010/ws"}, "origin_url"),
        ({"origin_url": 5}, "origin_url"),
        ({"edge_urls": "wss://edge"}, "edge_urls"),
        ({"edge_urls": ["wss://edge", "edge2"]}, "edge_urls"),
    ],
)
def test_config_errors_name_the_key(change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**GOOD, **change})
    assert caught.value.key == key


def test_config_missing_key() -> None:
    raw = dict(GOOD)
    del raw["admin_api_url"]
    with pytest.raises(ConfigError, match="admin_api_url"):
        parse_config(raw)


# -- broadcast fan-out ---------------------------------------------------------------------------


def test_broadcast_viewers_are_spread_over_the_edges_and_the_others_stay_at_the_origin() -> None:
    edges = ["wss://edge-1.school.test", "wss://edge-2.school.test"]
    config = parse_config({**GOOD, "edge_urls": edges})
    viewer, publisher = Grant.viewer(hidden=True), Grant.publisher(CAMERA, MICROPHONE)
    assigned = {sfu_url_for(config, viewer, f"identity-{i}") for i in range(50)}
    assert assigned == set(edges)
    # The same identity lands on the same edge again (a reconnect).
    assert sfu_url_for(config, viewer, "x") == sfu_url_for(config, viewer, "x")
    assert sfu_url_for(config, publisher, "identity-1") == config.sfu_url
    assert sfu_url_for(parse_config(GOOD), viewer, "identity-1") == config.sfu_url
    # A lesson's or meeting's watcher is seen by the teacher: at the origin.
    assert sfu_url_for(config, Grant.viewer(), "identity-1") == config.sfu_url


def test_an_edge_token_only_watches_and_is_hidden() -> None:
    room = tokens.room_name(ROOM)
    token = relay_token(room, "wss://edge-1.school.test", JWT_SECRET, NOW, "sferum")
    claims = tokens.verify(token, JWT_SECRET, room, NOW)
    assert claims["sub"] == "edge:wss://edge-1.school.test"
    grant = tokens.grant_of(claims)
    assert grant == Grant(can_publish=False, can_subscribe=True, hidden=True)
