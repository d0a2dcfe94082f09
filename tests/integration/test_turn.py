"""TURN for 1:1 calls: `sferumctl init --turn-port` sets up coturn and Synapse's turnServer
endpoint, and a teacher and a parent of the demo roster call each other through the relay.

Real processes: Synapse (SQLite) and coturn started by `sferumctl start`; two aiortc peers that
may use relay candidates only, so the call can work only if coturn accepts the credentials that
Synapse handed out and relays between the two allocations.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp.test_utils import TestServer
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from sferum_shared import SYSTEM_CLOCK
from sfu import tokens
from sfu.grants import CAMERA, MICROPHONE, Grant
from sfu.server import SfuServer
from tests.integration.clients import User, login
from tests.integration.conftest import DemoRoster, make_deployment
from tests.integration.harness import Deployment, demo_roster_folder, free_port, sferumctl
from tests.integration.test_sfu_media import Client, SmallVideo, client_peer, wait_for
from tests.integration.test_sfu_signalling import offline_config

pytestmark = pytest.mark.integration

SERVER = "school.test"


@attrs.frozen
class Callers:
    deployment: Deployment
    turn_port: int
    teacher: User
    parent: User


@pytest.fixture(scope="module")
def callers(
    tmp_path_factory: pytest.TempPathFactory, demo_roster: DemoRoster
) -> Iterator[Callers]:
    turn_port = free_port()
    deployment = make_deployment(tmp_path_factory.mktemp("turn"), "sqlite", None, SERVER)
    deployment.extra_init = ("--turn-port", str(turn_port))
    deployment.init()
    deployment.start()
    try:
        sferumctl("roster", "import", str(deployment.dir), str(demo_roster_folder()))
        # A 5А teacher and a parent of a 5А pupil: people the rules let write to each other.
        teacher = sorted(demo_roster.teachers["5a"])[0]
        pupil = sorted(demo_roster.students["5a"])[0]
        parent = sorted(demo_roster.guardians_of(pupil))[0]
        accounts = deployment.issue(teacher, parent)
        users = [
            asyncio.run(
                login(deployment.base_url, accounts[p]["user_id"], accounts[p]["password"])
            )
            for p in (teacher, parent)
        ]
        yield Callers(deployment, turn_port, *users)
    finally:
        deployment.stop()


async def turn_server(user: User) -> dict[str, Any]:
    reply = await user.call("GET", "/voip/turnServer")
    assert reply.status == 200, reply
    return reply.body


async def test_turn_server_hands_out_its_credentials(callers: Callers) -> None:
    uris = [
        f"turn:127.0.0.1:{callers.turn_port}?transport=udp",
        f"turn:127.0.0.1:{callers.turn_port}?transport=tcp",
    ]
    now = time.time()
    for user in (callers.teacher, callers.parent):
        body = await turn_server(user)
        assert set(body) == {"username", "password", "uris", "ttl"}, body
        assert body["uris"] == uris and body["ttl"] == 3600
        # The TURN REST API scheme: "EXPIRY:USER", checked by coturn with the shared secret.
        expiry, _, owner = body["username"].partition(":")
        assert owner == user.user_id and now + 3500 < int(expiry) < now + 3700
        assert body["password"]
    assert "turnserver.conf" in {p.name for p in callers.deployment.dir.iterdir()}


def relay_only(credentials: dict[str, Any]) -> RTCConfiguration:
    """A peer that may use relay candidates only (aiortc passes the policy on to aioice)."""
    udp = [uri for uri in credentials["uris"] if uri.endswith("transport=udp")]
    server = RTCIceServer(
        urls=udp, username=credentials["username"], credential=credentials["password"]
    )
    return RTCConfiguration(
        iceServers=[server],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,  # as browsers (and sfu.forwarding) bundle
    )


async def send_event(user: User, room_id: str, event_type: str, content: Any) -> None:
    txn = secrets.token_hex(8)
    path = f"/rooms/{urllib.parse.quote(room_id)}/send/{event_type}/{txn}"
    reply = await user.call("PUT", path, content)
    assert reply.status == 200, (event_type, reply)


async def wait_event(user: User, room_id: str, event_type: str, timeout: float = 20) -> Any:
    """The content of the newest `event_type` event in the room, once `user` can read one."""
    deadline = time.monotonic() + timeout
    path = f"/rooms/{urllib.parse.quote(room_id)}/messages?dir=b&limit=20"
    while time.monotonic() < deadline:
        reply = await user.call("GET", path)
        assert reply.status == 200, reply
        for event in reply.body.get("chunk", []):
            if event["type"] == event_type:
                return event["content"]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {event_type} in {room_id} within {timeout} s")


def selected_pair(pc: RTCPeerConnection) -> Any:
    """aioice's nominated candidate pair under the data channel's transport.

    aiortc has no candidate-pair stats (getStats reports RTP only), so this reaches into its
    internals: RTCSctpTransport -> RTCDtlsTransport -> RTCIceTransport -> aioice Connection.
    Test-only; it may need updating with aiortc.
    """
    assert pc.sctp is not None
    connection = pc.sctp.transport.transport.iceGatherer._connection
    return connection._nominated[1]


async def test_teacher_and_parent_call_through_the_relay(callers: Callers) -> None:
    teacher, parent = callers.teacher, callers.parent
    created = await teacher.create_room(is_direct=True, invite=[parent.user_id])
    assert created.status == 200, created
    room_id = created.body["room_id"]
    joined = await parent.call("POST", f"/rooms/{urllib.parse.quote(room_id)}/join", {})
    assert joined.status == 200, joined

    caller = RTCPeerConnection(relay_only(await turn_server(teacher)))
    callee = RTCPeerConnection(relay_only(await turn_server(parent)))
    try:
        received: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        channel = caller.createDataChannel("call")
        opened = asyncio.Event()
        channel.on("open", opened.set)

        @callee.on("datachannel")
        def on_datachannel(incoming: RTCDataChannel) -> None:
            @incoming.on("message")
            def on_message(message: str | bytes) -> None:
                if not received.done():
                    received.set_result(str(message))

        # Signalling as Matrix clients do it (m.call.* events in the DM, VoIP spec version 1);
        # aiortc gathers all candidates before setLocalDescription returns, so the SDP carries
        # them and no m.call.candidates are needed.
        call_id = secrets.token_hex(8)
        await caller.setLocalDescription(await caller.createOffer())
        offer = caller.localDescription
        candidates = [line for line in offer.sdp.splitlines() if line.startswith("a=candidate")]
        assert candidates and all(" typ relay" in line for line in candidates), offer.sdp
        await send_event(
            teacher,
            room_id,
            "m.call.invite",
            {
                "call_id": call_id,
                "party_id": "teacher",
                "version": "1",
                "lifetime": 60000,
                "offer": {"type": "offer", "sdp": offer.sdp},
            },
        )

        invite = await wait_event(parent, room_id, "m.call.invite")
        assert invite["call_id"] == call_id
        await callee.setRemoteDescription(RTCSessionDescription(**invite["offer"]))
        await callee.setLocalDescription(await callee.createAnswer())
        await send_event(
            parent,
            room_id,
            "m.call.answer",
            {
                "call_id": call_id,
                "party_id": "parent",
                "version": "1",
                "answer": {"type": "answer", "sdp": callee.localDescription.sdp},
            },
        )

        answer = await wait_event(teacher, room_id, "m.call.answer")
        await caller.setRemoteDescription(RTCSessionDescription(**answer["answer"]))
        await asyncio.wait_for(opened.wait(), 20)
        channel.send("Здравствуйте, это учитель 5А")
        assert await asyncio.wait_for(received, 10) == "Здравствуйте, это учитель 5А"

        for pc in (caller, callee):
            pair = selected_pair(pc)
            assert (pair.local_candidate.type, pair.remote_candidate.type) == ("relay", "relay")
            assert pair.local_candidate.host == "127.0.0.1"  # coturn's relay address
        await send_event(
            teacher,
            room_id,
            "m.call.hangup",
            {
                "call_id": call_id,
                "party_id": "teacher",
                "version": "1",
                "reason": "user_hangup",
            },
        )
    finally:
        await caller.close()
        await callee.close()

    # coturn saw both users' allocations, made with the credentials Synapse handed out
    # (usernames "EXPIRY:@user:server"); it writes its log line by line.
    log = callers.deployment.dir / "logs" / "coturn.log"
    text = log.read_text(errors="replace")
    assert "ALLOCATE processed, success" in text, text[-3000:]
    for user in (teacher, parent):
        assert f":{user.user_id}>" in text, (user.user_id, text[-3000:])


async def test_coturn_refuses_credentials_not_signed_with_the_secret(callers: Callers) -> None:
    """The relay is not open: a username Synapse did not sign gets no allocation at all."""
    forged = {**await turn_server(callers.parent), "password": "not-the-hmac"}
    pc = RTCPeerConnection(relay_only(forged))
    try:
        pc.createDataChannel("call")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
    finally:
        await pc.close()
    assert not [line for line in sdp.splitlines() if line.startswith("a=candidate")], sdp


async def test_sfu_clients_get_its_turn_and_its_peers_use_it(callers: Callers) -> None:
    """An SFU with the deployment's coturn: a viewer that may use relay candidates only, with
    the credentials from `joined`, receives the publisher's video; both ends of its connection
    are coturn relays, the SFU's with a TURN name of its own."""
    secret = callers.deployment.secrets["turn_shared_secret"]
    uris = (await turn_server(callers.teacher))["uris"]
    jwt_secret = "turn-test-jwt-secret-of-enough-length!"
    config = attrs.evolve(
        offline_config(jwt_secret), turn_uris=tuple(uris), turn_shared_secret=secret
    )
    server = TestServer(SfuServer(config, SYSTEM_CLOCK).app())
    await server.start_server()
    room = tokens.room_name("!lesson:school.test")
    now = int(time.time())
    publisher, viewer = client_peer(), Client(RTCPeerConnection())  # replaced below
    try:
        async with aiohttp.ClientSession() as session:
            teacher_ws = await session.ws_connect(server.make_url("/ws"))
            grant = Grant.publisher(CAMERA, MICROPHONE)
            token = tokens.issue(grant, room, "teacher", jwt_secret, now)
            await teacher_ws.send_json({"type": "join", "room": room, "token": token})
            joined = await receive(teacher_ws, "joined")
            [ice] = joined["ice_servers"]
            assert ice["urls"] == uris and ice["username"].endswith(":teacher")
            publisher.addTrack(SmallVideo())
            await publisher.setLocalDescription(await publisher.createOffer())
            await teacher_ws.send_json({"type": "publish", "sdp": publisher.localDescription.sdp})
            answer = await receive(teacher_ws, "answer")
            await publisher.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

            pupil_ws = await session.ws_connect(server.make_url("/ws"))
            token = tokens.issue(Grant.viewer(), room, "pupil", jwt_secret, now)
            await pupil_ws.send_json({"type": "join", "room": room, "token": token})
            [ice] = (await receive(pupil_ws, "joined"))["ice_servers"]
            relayed = {"uris": ice["urls"], "username": ice["username"]}
            await viewer.pc.close()
            pc = RTCPeerConnection(relay_only({**relayed, "password": ice["credential"]}))
            viewer = Client(pc)

            @pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                viewer.tasks.append(asyncio.ensure_future(viewer.consume(track)))

            await pupil_ws.send_json({"type": "subscribe"})
            offer = await receive(pupil_ws, "offer")
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await pupil_ws.send_json({"type": "answer", "sdp": pc.localDescription.sdp})
            assert await wait_for(lambda: viewer.frames["video"] >= 10, 30), viewer.frames
            pair = selected_transport_pair(pc)
            assert (pair.local_candidate.type, pair.remote_candidate.type) == ("relay", "relay")
    finally:
        await publisher.close()
        await viewer.pc.close()
        for task in viewer.tasks:
            task.cancel()
        await server.close()
    text = (callers.deployment.dir / "logs" / "coturn.log").read_text(errors="replace")
    assert ":sfu:pupil>" in text, text[-3000:]  # the SFU's own allocation for the viewer


async def receive(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next message of `kind` on an SFU socket (others, e.g. participants, are skipped)."""
    async with asyncio.timeout(15):
        while True:
            message: dict[str, Any] = await ws.receive_json()
            assert message["type"] != "error", message
            if message["type"] == kind:
                return message


def selected_transport_pair(pc: RTCPeerConnection) -> Any:
    """aioice's nominated pair under the first media transport (test-only internals)."""
    transport = pc.getTransceivers()[0].receiver.transport
    return transport.transport.iceGatherer._connection._nominated[1]
