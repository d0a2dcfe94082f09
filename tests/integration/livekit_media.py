"""Synthetic media for LiveKit's Python SDK in tests: a camera with a moving picture and a
microphone with a tone, published as an app would publish them."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
from livekit import rtc

WIDTH, HEIGHT = 1280, 720
SAMPLE_RATE = 48000
CHUNK_SAMPLES = SAMPLE_RATE // 50  # 20 ms


class Publisher:
    """Synthetic cameras and microphones, fed until :meth:`stop`, which must come before the
    rooms disconnect.

    Feeds are never cancelled inside `capture_frame`: the native client reads the frame's
    buffer after the call has been made, so a frame freed by a cancelled capture is memory it
    may still read (and a native abort ends the whole test session). They finish their
    capture and see the stop.
    """

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self._sources: list[rtc.AudioSource | rtc.VideoSource] = []
        self._feeding = True

    async def camera(self, room: rtc.Room) -> rtc.LocalTrackPublication:
        source = rtc.VideoSource(WIDTH, HEIGHT)
        self._sources.append(source)
        track = rtc.LocalVideoTrack.create_video_track("camera", source)

        async def feed() -> None:
            shade = 0
            while self._feeding:
                # A picture that changes (a moving bar), so the encoder has something to send.
                picture = np.full((HEIGHT, WIDTH, 4), 40, dtype=np.uint8)
                picture[:, (shade * 8) % WIDTH : (shade * 8) % WIDTH + 64, :3] = 220
                source.capture_frame(
                    rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.RGBA, picture.tobytes())
                )
                shade += 1
                await asyncio.sleep(1 / 30)

        self._tasks.append(asyncio.create_task(feed()))
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA, simulcast=False)
        return await room.local_participant.publish_track(track, options)

    async def microphone(self, room: rtc.Room, hz: float) -> rtc.LocalAudioTrack:
        # A queue of two seconds: on a busy machine the loop wakes late, and the native client
        # must never find its queue overrun (rust-sdks#497).
        source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=2000)
        self._sources.append(source)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
        tone = (np.sin(2 * math.pi * hz * np.arange(SAMPLE_RATE) / SAMPLE_RATE) * 12000).astype(
            np.int16
        )

        async def feed() -> None:
            """Chunks of 20 ms, paced by the clock: at most ~100 ms ahead of real time."""
            at, sent, started = 0, 0.0, time.monotonic()
            while self._feeding:
                chunk = np.take(tone, range(at, at + CHUNK_SAMPLES), mode="wrap")
                await source.capture_frame(
                    rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE, 1, CHUNK_SAMPLES)
                )
                at = (at + CHUNK_SAMPLES) % SAMPLE_RATE
                sent += CHUNK_SAMPLES / SAMPLE_RATE
                ahead = sent - (time.monotonic() - started)
                if ahead > 0.1:
                    await asyncio.sleep(ahead - 0.1)

        self._tasks.append(asyncio.create_task(feed()))
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await room.local_participant.publish_track(track, options)
        return track

    async def stop(self) -> None:
        """Stop feeding, wait until every feed is out of the native client, then close the
        sources."""
        self._feeding = False
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for source in self._sources:
            await source.aclose()
        self._sources.clear()


class Audience:
    """What one participant receives, read from its native client's own receive statistics
    (no frame is copied into Python): per publisher, the video sizes decoded and whether its
    audio carries the tone (energy) rather than silence."""

    def __init__(self, room: rtc.Room) -> None:
        self.tracks: dict[str, list[rtc.RemoteTrack]] = {}

        def subscribed(
            track: rtc.RemoteTrack,
            publication: rtc.RemoteTrackPublication,
            publisher: rtc.RemoteParticipant,
        ) -> None:
            self.tracks.setdefault(publisher.identity, []).append(track)

        room.on("track_subscribed", subscribed)

    async def seen(self) -> tuple[dict[str, set[tuple[int, int]]], set[str]]:
        """(video sizes decoded by publisher, publishers heard)."""
        sizes: dict[str, set[tuple[int, int]]] = {}
        heard: set[str] = set()
        # Copied: tracks may be subscribed while the statistics are awaited.
        for publisher, tracks in list(self.tracks.items()):
            for track in list(tracks):
                for stats in await track.get_stats():
                    if not stats.HasField("inbound_rtp"):
                        continue
                    inbound = stats.inbound_rtp.inbound
                    if stats.inbound_rtp.stream.kind == "video":
                        if inbound.frames_decoded:
                            size = (inbound.frame_width, inbound.frame_height)
                            sizes.setdefault(publisher, set()).add(size)
                    elif inbound.total_audio_energy > 0.01:  # the tone; silence stays near 0
                        heard.add(publisher)
        return sizes, heard

    def video_from(self) -> set[str]:
        return {
            who
            for who, tracks in self.tracks.items()
            for track in tracks
            if track.kind == rtc.TrackKind.KIND_VIDEO
        }
