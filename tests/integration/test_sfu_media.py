"""In-process SFU media test: aiortc publisher -> MediaRouter -> aiortc subscribers.

No Synapse and no network signalling: offers and answers are handed over in memory, media
flows over loopback ICE/DTLS/SRTP like in production.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
from aiortc import (
    AudioStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
    rtcrtpreceiver,
    rtcrtpsender,
)
from aiortc.codecs import get_decoder, get_encoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from sfu import aiortc_compat
from sfu.forwarding import MediaRouter

TONE = struct.pack("<hh", 8000, -8000)


class SmallVideo(VideoStreamTrack):
    """320x240 at 30 fps: small enough that in-process encode/decode stays cheap."""

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=320, height=240)
        for plane in frame.planes:
            plane.update(bytes([pts // 3000 % 256]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


class Tone(AudioStreamTrack):
    """A loud square wave, so the RFC 6464 level makes the publisher an active speaker."""

    async def recv(self) -> AudioFrame:
        frame = await super().recv()
        assert isinstance(frame, AudioFrame)
        for plane in frame.planes:
            plane.update((TONE * plane.buffer_size)[: plane.buffer_size])
        return frame


def client_peer() -> RTCPeerConnection:
    """A client connection that bundles all media on one transport, as browsers do.

    With aiortc's default (balanced) policy a client receiving several audio tracks in one
    bundled offer keeps all but the first on a transport that never connects, and its
    SSRC-less routing then mixes the others into the first track.
    """
    return RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


@attrs.define
class Client:
    pc: RTCPeerConnection
    frames: Counter[str] = attrs.field(factory=Counter)
    receivers: dict[str, RTCRtpReceiver] = attrs.field(factory=dict)
    tasks: list[asyncio.Task[None]] = attrs.field(factory=list)

    async def consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.frames[track.kind] += 1
        except MediaStreamError:
            return


@attrs.define
class Codecs:
    """Counts encoders/decoders aiortc creates, by MIME type, in this whole process."""

    encoders: Counter[str] = attrs.field(factory=Counter)
    decoders: Counter[str] = attrs.field(factory=Counter)


@pytest.fixture
def codecs(monkeypatch: pytest.MonkeyPatch) -> Codecs:
    counts = Codecs()

    def counting(original: Callable[[Any], Any], counter: Counter[str]) -> Callable[[Any], Any]:
        def create(codec: Any) -> Any:
            counter[codec.mimeType] += 1
            return original(codec)

        return create

    # The names the sender and receiver modules call, not aiortc.codecs': we count what
    # the RTP stack really instantiates.
    monkeypatch.setattr(rtcrtpsender, "get_encoder", counting(get_encoder, counts.encoders))
    monkeypatch.setattr(rtcrtpreceiver, "get_decoder", counting(get_decoder, counts.decoders))
    return counts


@attrs.define
class Lesson:
    router: MediaRouter
    publisher: RTCPeerConnection
    video_sender: RTCRtpSender
    subscribers: list[Client]


async def start_lesson(pupils: int) -> Lesson:
    router = MediaRouter(speaker_slots=3)
    publisher = RTCPeerConnection()
    video_sender = publisher.addTrack(SmallVideo())
    publisher.addTrack(Tone())
    await publisher.setLocalDescription(await publisher.createOffer())
    answer = await router.publish("teacher", publisher.localDescription)
    await publisher.setRemoteDescription(answer)

    subscribers = []
    for i in range(pupils):
        client = Client(client_peer())

        def on_track(track: MediaStreamTrack, client: Client = client) -> None:
            receiver = next(
                t.receiver for t in client.pc.getTransceivers() if t.receiver.track is track
            )
            client.receivers.setdefault(track.kind, receiver)
            client.tasks.append(asyncio.ensure_future(client.consume(track)))

        client.pc.on("track", on_track)
        await client.pc.setRemoteDescription(await router.subscribe(f"pupil{i}"))
        await client.pc.setLocalDescription(await client.pc.createAnswer())
        await router.accept_answer(f"pupil{i}", client.pc.localDescription)
        subscribers.append(client)
    return Lesson(router, publisher, video_sender, subscribers)


async def stop_lesson(lesson: Lesson) -> None:
    await lesson.router.close()
    await lesson.publisher.close()
    for client in lesson.subscribers:
        await client.pc.close()
        for task in client.tasks:
            task.cancel()


@pytest.fixture
async def lesson(codecs: Codecs) -> AsyncIterator[Lesson]:
    lesson = await start_lesson(pupils=3)
    yield lesson
    await stop_lesson(lesson)


async def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.mark.timeout(60)
async def test_subscribers_decode_forwarded_video_and_audio(
    lesson: Lesson, codecs: Codecs
) -> None:
    clients = lesson.subscribers
    assert await wait_for(lambda: all(c.frames["video"] >= 10 for c in clients), 15)
    before = [c.frames["video"] for c in clients]
    await asyncio.sleep(2)
    for client, seen in zip(clients, before, strict=True):
        assert client.frames["video"] > seen + 5  # still flowing (~30 fps on an idle machine)
        assert client.frames["audio"] > 0

    # The SFU created no codec: the only VP8 encoder is the publisher's, the only VP8
    # decoders are the pupils'. Stock MediaRelay would add one SFU decoder plus one
    # encoder per subscriber; get_decoder-passthrough would still add SFU "decoders".
    assert codecs.encoders["video/VP8"] == 1
    assert codecs.decoders["video/VP8"] == len(clients)
    assert codecs.encoders["audio/opus"] == 1
    assert codecs.decoders["audio/opus"] == len(clients)


@pytest.mark.timeout(60)
async def test_subscriber_picture_loss_reaches_publisher(lesson: Lesson) -> None:
    client = lesson.subscribers[1]
    assert await wait_for(lambda: client.frames["video"] >= 10, 15)
    await asyncio.sleep(1)  # past the keyframe-request coalescing window
    requests = 0

    def count_keyframe_request() -> None:
        nonlocal requests
        requests += 1

    lesson.video_sender._send_keyframe = count_keyframe_request  # type: ignore[method-assign]
    receiver = client.receivers["video"]
    ssrc = receiver.getSynchronizationSources()[0].source
    await aiortc_compat.request_keyframe(receiver, ssrc)
    assert await wait_for(lambda: requests >= 1, 3)


async def measure(pupils: int, seconds: float) -> tuple[float, float, int]:
    lesson = await start_lesson(pupils)
    try:
        assert await wait_for(lambda: all(c.frames["video"] for c in lesson.subscribers), 15)
        router = lesson.router
        cpu, forward, packets = time.process_time(), router.forward_seconds, 0
        packets = router.forwarded_packets
        await asyncio.sleep(seconds)
        return (
            time.process_time() - cpu,
            router.forward_seconds - forward,
            router.forwarded_packets - packets,
        )
    finally:
        await stop_lesson(lesson)


@pytest.mark.alone  # packets forwarded to 5 subscribers and to 1 over the same 2 s
@pytest.mark.timeout(120)
async def test_forwarding_cost_per_subscriber(codecs: Codecs) -> None:
    """Each subscriber gets its own copy of every packet; the cost per subscriber is printed
    (bench/sfu.py compares the whole SFU with other servers under the same load)."""
    seconds = 2.0
    one = await measure(1, seconds)
    five = await measure(5, seconds)
    for pupils, (cpu, forward, packets) in ((1, one), (5, five)):
        print(
            f"\n{pupils} subscriber(s): process CPU {cpu / seconds:.3f} core "
            f"(includes in-process publisher encode and subscriber decodes), "
            f"SFU forwarding path {forward / seconds * 1000:.1f} ms/s, "
            f"{packets / seconds:.0f} pkt/s out, "
            f"{forward / max(packets, 1) * 1e6:.0f} µs/packet"
        )
    per_sub = (five[1] - one[1]) / seconds / 4
    print(f"marginal SFU forwarding cost per subscriber: {per_sub * 1000:.1f} ms CPU per s")
    assert five[2] > 3 * one[2]


async def connect_subscriber(router: MediaRouter, name: str) -> Client:
    """A client subscribed to ``router`` that answers every later offer (renegotiation)."""
    client = Client(client_peer())

    @client.pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        client.tasks.append(asyncio.ensure_future(client.consume(track)))

    await answer_offer(router, name, client.pc, await router.subscribe(name))
    return client


async def answer_offer(
    router: MediaRouter, name: str, pc: RTCPeerConnection, offer: RTCSessionDescription
) -> None:
    await pc.setRemoteDescription(offer)
    await pc.setLocalDescription(await pc.createAnswer())
    assert not await router.accept_answer(name, pc.localDescription)


@pytest.mark.timeout(60)
async def test_late_publisher_reaches_subscribers_by_renegotiation_and_through_an_edge() -> None:
    """Subscribers that were there first get a new offer; an edge relays like a subscriber."""
    origin, edge = MediaRouter(), MediaRouter()
    # The edge's upstream and a viewer of each router exist before anyone publishes.
    await origin.accept_answer("edge", await edge.relay("origin", await origin.subscribe("edge")))
    early = await connect_subscriber(origin, "early")
    far = await connect_subscriber(edge, "far")
    publisher = client_peer()
    publisher.addTrack(SmallVideo())
    publisher.addTrack(Tone())
    try:
        await publisher.setLocalDescription(await publisher.createOffer())
        await publisher.setRemoteDescription(
            await origin.publish("teacher", publisher.localDescription)
        )
        reoffer = await origin.refresh("early")
        assert reoffer is not None and reoffer.sdp.count("m=video") == 1
        await answer_offer(origin, "early", early.pc, reoffer)
        upstream_offer = await origin.refresh("edge")
        assert upstream_offer is not None
        assert not await origin.accept_answer("edge", await edge.relay("origin", upstream_offer))
        assert await origin.refresh("early") is None  # nothing new: no offer
        far_offer = await edge.refresh("far")
        assert far_offer is not None
        await answer_offer(edge, "far", far.pc, far_offer)
        clients = (early, far)
        assert await wait_for(lambda: all(c.frames["video"] >= 20 for c in clients), 20), [
            dict(c.frames) for c in clients
        ]
        assert all(c.frames["audio"] > 0 for c in clients)
        assert edge.stream_count == 4  # the origin's video and its 3 speaker slots
    finally:
        for router in (origin, edge):
            await router.close()
        await publisher.close()
        for client in (early, far):
            await client.pc.close()
            for task in client.tasks:
                task.cancel()


@pytest.mark.timeout(60)
async def test_a_publisher_preferring_h264_is_answered_vp8(codecs: Codecs) -> None:
    """Safari offers H.264 first; the SFU answers VP8, the one codec its subscribers expect."""
    router = MediaRouter()
    publisher, viewer = client_peer(), Client(client_peer())
    video = publisher.addTransceiver(SmallVideo(), direction="sendonly")
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    video.setCodecPreferences(sorted(capabilities, key=lambda c: c.mimeType != "video/H264"))
    try:
        await publisher.setLocalDescription(await publisher.createOffer())
        assert "H264/90000" in publisher.localDescription.sdp.split("VP8/90000")[0]
        answer = await router.publish("teacher", publisher.localDescription)
        assert "H264" not in answer.sdp and "VP8/90000" in answer.sdp
        await publisher.setRemoteDescription(answer)
        viewer = await connect_subscriber(router, "pupil")
        assert await wait_for(lambda: viewer.frames["video"] >= 10, 20), viewer.frames
        assert codecs.encoders["video/H264"] == 0 and codecs.encoders["video/VP8"] == 1
    finally:
        await router.close()
        await publisher.close()
        await viewer.pc.close()
        for task in viewer.tasks:
            task.cancel()
