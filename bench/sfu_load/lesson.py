"""One client process of `bench/sfu_lesson.py`: the teacher, or the class of pupils.

    python -m bench.sfu_load.lesson teacher|pupils TARGET_JSON --pupils N --speaking S \
        [--of FIRST END]

* ``teacher``: publishes :class:`~bench.sfu_load.lesson_media.LessonVideo` (720p) and a
  speaking :class:`~bench.sfu_load.lesson_media.Voice`, and hears every pupil;
* ``pupils``: N pupils, or those from FIRST to END - 1 when the class is shared among
  processes, each publishing a Voice (the first S of the class speaking, the others as DTX
  leaves silence) and receiving the teacher's video and every other voice.

Every participant has a publisher and a subscriber connection, as LiveKit's clients do (Janus:
a publisher handle and one multistream subscriber handle). Nothing received is decoded
(:func:`~bench.sfu_load.media.stop_decoding`): frames are counted per track.

Over stdio, as `bench/sfu_load/processes.py` describes, with two more steps first: it prints
``published`` once its tracks are published; on ``subscribe`` it subscribes (Janus: to every
feed but its own, which all exist by then; LiveKit's SFU offers them unasked), and prints
``ready`` once every participant receives the teacher's video (pupils) and at least S voices.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import aiohttp
import attrs
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
)
from aiortc.mediastreams import MediaStreamError

from bench.sfu_load.client import (
    READY_TIMEOUT_SECONDS,
    commands,
    packet_count,
    say,
    wait_connected,
)
from bench.sfu_load.lesson_media import LESSON_BITRATE, LessonVideo, Voice
from bench.sfu_load.media import fix_bitrate, stop_decoding
from bench.sfu_load.signalling import (
    HTTP_TIMEOUT,
    JanusSignaller,
    LiveKitSignaller,
    Signaller,
    Target,
    signaller,
)

TEACHER_FEED, FIRST_PUPIL_FEED = 1, 100


def feeds(pupils: int) -> list[int]:
    """Every participant's Janus feed ID: the teacher's, then the pupils' in order."""
    return [TEACHER_FEED, *range(FIRST_PUPIL_FEED, FIRST_PUPIL_FEED + pupils)]


def _bundled() -> RTCPeerConnection:
    """One transport for every m-line, as browsers and LiveKit's SDKs set it (aiortc's
    default, "balanced", gives the third m-line of an offer a transport it then drops)."""
    return RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


@attrs.define(eq=False)
class Participant:
    name: str
    feed: int
    tracks: list[MediaStreamTrack]
    publisher: RTCPeerConnection = attrs.field(factory=lambda: _bundled())
    subscriber: RTCPeerConnection = attrs.field(factory=lambda: _bundled())
    video_frames: int = 0
    audio_frames: dict[int, int] = attrs.field(factory=dict)  # by received track, in order
    consumers: list[asyncio.Task[None]] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        for track in self.tracks:
            self.publisher.addTrack(track)

        @self.subscriber.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            # Not by track.id: Janus gives every stream of a subscription the same msid.
            self.consumers.append(asyncio.create_task(self._count(track, len(self.consumers))))

    async def _count(self, track: MediaStreamTrack, voice: int) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                if track.kind == "video":
                    self.video_frames += 1
                else:
                    self.audio_frames[voice] = self.audio_frames.get(voice, 0) + 1

    def hears(self, voices: int, video: bool) -> bool:
        return len(self.audio_frames) >= voices and (self.video_frames > 0 or not video)

    async def close(self) -> None:
        for consumer in self.consumers:
            consumer.cancel()
        await self.publisher.close()
        await self.subscriber.close()


def participants_of(args: argparse.Namespace) -> list[Participant]:
    if args.role == "teacher":
        return [Participant("teacher", TEACHER_FEED, [LessonVideo(), Voice(speaking=True)])]
    first, last = args.of
    return [
        Participant(f"pupil-{i}", feed, [Voice(speaking=i < args.speaking)])
        for i, feed in enumerate(feeds(args.pupils)[1:])
        if first <= i < last
    ]


async def publish(signalling: Signaller, participant: Participant, pupils: int) -> None:
    if isinstance(signalling, LiveKitSignaller):
        await signalling.participate(
            participant.publisher, participant.subscriber, participant.name
        )
    elif isinstance(signalling, JanusSignaller):
        teacher = participant.feed == TEACHER_FEED  # makes the room, for everyone
        create_for = len(feeds(pupils)) if teacher else 0
        await signalling.publish_feed(participant.publisher, participant.feed, create_for)
    else:
        raise ValueError(f"no lesson through {signalling.target.kind!r}")
    await wait_connected(participant.publisher)  # Janus knows no feed before its media is up


async def subscribe(signalling: Signaller, participant: Participant, pupils: int) -> None:
    if isinstance(signalling, JanusSignaller):
        others = [feed for feed in feeds(pupils) if feed != participant.feed]
        await signalling.subscribe_feeds(participant.subscriber, others)


async def ready(participants: list[Participant], voices: int) -> None:
    """Until everyone hears `voices` voices, and pupils see the teacher; what is missing is
    logged if that does not come in time."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            while not all(p.hears(voices, video=p.feed != TEACHER_FEED) for p in participants):
                await asyncio.sleep(0.05)
    except TimeoutError:
        for p in participants:
            print(
                f"{p.name}: {p.video_frames} video frames, voices {p.audio_frames},"
                f" subscriber {p.subscriber.connectionState}",
                file=sys.stderr,
            )
        raise


async def totals(participants: list[Participant]) -> dict[str, Any]:
    received = [await packet_count(p.subscriber, "inbound-rtp") for p in participants]
    sent = [await packet_count(p.publisher, "outbound-rtp") for p in participants]
    return {
        "time": time.monotonic(),
        "packets_received": sum(received),
        "packets_sent": sum(sent),
        "video_frames": [p.video_frames for p in participants if p.feed != TEACHER_FEED],
        "voices_heard": [len(p.audio_frames) for p in participants],
    }


async def run(args: argparse.Namespace) -> None:
    stop_decoding()
    fix_bitrate([], LESSON_BITRATE)
    participants = participants_of(args)
    stdin = await commands()
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        signalling = signaller(Target.from_json(args.target), http)
        try:
            await asyncio.gather(*(publish(signalling, p, args.pupils) for p in participants))
            say("published")
            while (line := (await stdin.readline()).decode().strip()) not in ("stop", ""):
                if line == "subscribe":
                    await asyncio.gather(
                        *(subscribe(signalling, p, args.pupils) for p in participants)
                    )
                    await ready(participants, args.speaking)
                    say("ready")
                elif line == "mark":
                    say("marked " + json.dumps(await totals(participants)))
        finally:
            for participant in participants:
                await participant.close()
            await signalling.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="a client process of bench/sfu_lesson.py")
    parser.add_argument("role", choices=("teacher", "pupils"))
    parser.add_argument("target", help="the Target as JSON")
    parser.add_argument("--pupils", type=int, required=True, help="pupils in the lesson")
    parser.add_argument("--speaking", type=int, required=True, help="pupils who speak")
    parser.add_argument(
        "--of",
        type=int,
        nargs=2,
        default=(0, 1 << 30),
        metavar=("FIRST", "END"),
        help="pupils: this process's share, pupils FIRST to END - 1",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
