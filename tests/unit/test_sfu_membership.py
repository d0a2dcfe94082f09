"""Ending sessions of users who left (sfu.membership), the watcher's batching, and sfu.metrics."""

from __future__ import annotations

import json
import time
from typing import Any, cast

import attrs
import pytest
from aiohttp import web

from sferum_shared import Clock
from sferum_shared.config import ConfigError
from sferum_shared.model import Role
from sferum_shared.rooms import RoomKind
from sferum_shared.vocabulary import Key
from sferum_shared.web import ApiError
from sfu import tokens
from sfu.call import Participant, Room
from sfu.config import parse_config
from sfu.grants import Facts, Grant, Refusal
from sfu.membership import (
    CLOSE_REMOVED,
    Session,
    close_reason,
    session_of,
    still_allowed,
)
from sfu.metrics import SfuMetrics, Snapshot, lag, retired_with, snapshot
from sfu.server import SfuServer

SECRET = "membership-unit-secret-of-enough-length"
RAW_CONFIG: dict[str, Any] = {
    "server_name": "school.test",
    "homeserver_url": "http://127.0.0.1:9",
    "admin_api_url": "http://127.0.0.1:9/admin",
    "admin_api_secret": "unused",
    "jwt_secret": SECRET,
    "sfu_url": "http://127.0.0.1:9",
}


def pupil(membership: str | None) -> Facts:
    return Facts(RoomKind.LESSON, membership, linked=True, attends_room_class=True)


# -- the decision ---------------------------------------------------------------------------


def test_a_joined_pupil_stays() -> None:
    assert still_allowed(pupil("join")) is True


@pytest.mark.parametrize(
    ("membership", "refusal"),
    [("leave", Refusal.NOT_JOINED), (None, Refusal.NOT_JOINED), ("ban", Refusal.BANNED)],
)
def test_a_pupil_who_left_or_was_banned_goes(membership: str | None, refusal: Refusal) -> None:
    assert still_allowed(pupil(membership)) is refusal


def test_broadcast_viewers_stay_while_in_the_school() -> None:
    # A parent never joins the broadcast room: membership does not matter, the school does.
    parent = Facts(RoomKind.BROADCAST, None, linked=True, roles=frozenset({Role.GUARDIAN}))
    assert still_allowed(attrs.evolve(parent, in_school=True)) is True
    assert still_allowed(parent) is Refusal.NOT_IN_SCHOOL
    assert still_allowed(attrs.evolve(parent, linked=False)) is Refusal.NOT_IN_DIRECTORY


def test_close_reason_is_the_code_and_fits_a_close_frame() -> None:
    for refusal in Refusal:
        assert close_reason(refusal) == refusal.value
        assert len(close_reason(refusal).encode()) <= 123


# -- the session claim ----------------------------------------------------------------------


def test_session_travels_in_the_signed_token() -> None:
    session = Session("!lesson:school.test", "@pupil:school.test", "DEV")
    room = tokens.room_name(session.room_id)
    jwt = tokens.issue(
        Grant.viewer(), room, "hashed", SECRET, int(time.time()), private_claims=session.claims()
    )
    claims = tokens.verify(jwt, SECRET, room, int(time.time()))
    assert session_of(claims) == session
    assert claims["sub"] == "hashed"  # LiveKit's claims are untouched


def test_private_claims_never_override_livekit_claims() -> None:
    room = tokens.room_name("!r:school.test")
    jwt = tokens.issue(
        Grant.viewer(), room, "me", SECRET, int(time.time()), private_claims={"sub": "other"}
    )
    assert tokens.verify(jwt, SECRET, room, int(time.time()))["sub"] == "me"


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {Key.SESSION_CLAIM: "x"},
        {Key.SESSION_CLAIM: {"room_id": "!r", "user_id": "@u"}},
        {Key.SESSION_CLAIM: {"room_id": "!r", "user_id": 1, "device_id": "D"}},
    ],
)
def test_tokens_without_a_good_session_claim_are_not_watched(claims: dict[str, Any]) -> None:
    assert session_of(claims) is None


# -- config ---------------------------------------------------------------------------------


def test_check_interval_defaults_to_two_seconds_and_is_bounded() -> None:
    assert parse_config(RAW_CONFIG).membership_check_seconds == 2.0
    assert parse_config({**RAW_CONFIG, "membership_check_seconds": 0.5}).membership_check_seconds
    for bad in (0, 10, "2", True):
        with pytest.raises(ConfigError) as e:
            parse_config({**RAW_CONFIG, "membership_check_seconds": bad})
        assert e.value.key == "membership_check_seconds"


# -- the watcher ----------------------------------------------------------------------------


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed = False
        self.close_code: int | None = None
        self.close_message = b""

    async def send_str(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        self.closed, self.close_code, self.close_message = True, code, message
        return True


class FakeDirectory:
    def __init__(self, answers: dict[tuple[str, str], Facts | Exception]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []

    async def facts_for(self, user_id: str, room_id: str) -> Facts:
        self.asked.append((room_id, user_id))
        answer = self.answers[(room_id, user_id)]
        if isinstance(answer, Exception):
            raise answer
        return answer


def join(server: SfuServer, room_name: str, identity: str, session: Session | None) -> FakeSocket:
    rooms: dict[str, Room] = server._rooms
    room = rooms.setdefault(room_name, Room(room_name))
    socket = FakeSocket()
    ws = cast(web.WebSocketResponse, socket)
    room.participants[identity] = Participant(identity, Grant.viewer(), ws, session)
    return socket


async def test_watcher_ends_only_removed_users_asking_once_per_user() -> None:
    server = SfuServer(parse_config(RAW_CONFIG), Clock(lambda: 1_760_000_000))
    lesson = "!lesson:school.test"
    gone, stays, flaky = "@gone:school.test", "@stays:school.test", "@flaky:school.test"
    directory = FakeDirectory(
        {
            (lesson, gone): pupil("ban"),
            (lesson, stays): pupil("join"),
            (lesson, flaky): ApiError(503, "M_UNKNOWN", "directory down"),
        }
    )
    server._auth = directory  # type: ignore[assignment]
    room = tokens.room_name(lesson)
    phone = join(server, room, "gone-phone", Session(lesson, gone, "PHONE"))
    laptop = join(server, room, "gone-laptop", Session(lesson, gone, "LAPTOP"))
    kept = join(server, room, "stays", Session(lesson, stays, "D"))
    unknown = join(server, room, "flaky", Session(lesson, flaky, "D"))
    unwatched = join(server, room, "hand-minted", None)

    assert await server.check_memberships() == 2
    assert sorted(directory.asked) == [(lesson, flaky), (lesson, gone), (lesson, stays)]
    for socket in (phone, laptop):
        assert socket.closed and socket.close_code == CLOSE_REMOVED
        assert socket.close_message == b"ru.sferum.sfu_banned"
        assert socket.sent[0] == {
            "type": "removed",
            "reason": "ru.sferum.sfu_banned",
            "message": Refusal.BANNED.message,
        }
    for socket in (kept, unknown, unwatched):
        assert not socket.closed  # a directory that cannot answer ends nobody's call
    assert set(server._rooms[room].participants) == {"stays", "flaky", "hand-minted"}
    assert kept.sent[-1]["type"] == "participants"


# -- metrics --------------------------------------------------------------------------------


def test_metrics_render_the_snapshot() -> None:
    snap = Snapshot(
        rooms=1,
        participants=3,
        streams=2,
        packets_in=10,
        packets_out=25,
        bytes_in=1000,
        bytes_out=2500,
    )
    metrics = SfuMetrics(lambda: snap)
    metrics.loop_lag.set(0.25)
    metrics.auth_refusals.labels("ru.sferum.sfu_not_member").inc()
    text = metrics.render().decode()
    for line in (
        "sfu_rooms 1.0",
        "sfu_participants 3.0",
        "sfu_streams 2.0",
        "sfu_packets_in_total 10.0",
        "sfu_packets_out_total 25.0",
        "sfu_bytes_in_total 1000.0",
        "sfu_bytes_out_total 2500.0",
        "sfu_forwarding_delay_seconds_count 10.0",
        "sfu_event_loop_lag_seconds 0.25",
        'sfu_auth_refusals_total{reason="ru.sferum.sfu_not_member"} 1.0',
    ):
        assert line in text.splitlines(), (line, text)
    assert "process_resident_memory_bytes" in text  # the dashboard's memory per process


@attrs.define
class FakeRouter:
    received_packets: int
    forwarded_packets: int
    received_bytes: int
    forwarded_bytes: int
    forward_seconds: float
    stream_count: int


def test_a_closed_rooms_counts_stay_in_the_totals() -> None:
    """Counters never go down: a room that closes hands its counts to the retired totals."""
    live, closing = FakeRouter(1, 2, 100, 200, 0.5, 1), FakeRouter(10, 20, 1000, 2000, 1.0, 2)
    before = snapshot(3, [live, closing], Snapshot())
    after = snapshot(1, [live], retired_with(Snapshot(), closing))
    assert (before.rooms, before.streams, after.rooms, after.streams) == (2, 3, 1, 1)
    for counter in ("packets_in", "packets_out", "bytes_in", "bytes_out", "forward_seconds"):
        assert getattr(after, counter) == getattr(before, counter), counter
    assert (after.bytes_in, after.bytes_out) == (1100, 2200)


def test_lag_is_lateness_never_negative() -> None:
    assert lag(10.0, 10.3) == pytest.approx(0.3)
    assert lag(10.0, 9.9) == 0.0
