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

    async def camera(
        self, room: rtc.Room, width: int = WIDTH, height: int = HEIGHT
    ) -> rtc.LocalTrackPublication:
        source = rtc.VideoSource(width, height)
        self._sources.append(source)
        track = rtc.LocalVideoTrack.create_video_track("camera", source)

        async def feed() -> None:
            shade = 0
            while self._feeding:
                # A picture that changes (a moving bar), so the encoder has something to send.
                picture = np.full((height, width, 4), 40, dtype=np.uint8)
                picture[:, (shade * 8) % width : (shade * 8) % width + 64, :3] = 220
                source.capture_frame(
                    rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, picture.tobytes())
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
    """What one participant receives, from the frames its native client decodes: per
    publisher, the video sizes and frames, and the audio frames that carry the tone.

    Not from `Track.get_stats()`: LiveKit's native client aborts the whole process when a
    statistic it parses is not a JSON number (a panic in its rtp_receiver.rs, seen here). The
    streams keep one video frame queued at most, so a slow reader costs nothing, and deliver
    audio in 100 ms frames.
    """

    LOUD = 2000  # a sample above this is the tone; Opus-coded silence stays near 0

    def __init__(self, room: rtc.Room) -> None:
        self.tracks: dict[str, list[rtc.RemoteTrack]] = {}
        self.video_sizes: dict[str, set[tuple[int, int]]] = {}
        self.video_frames: dict[str, int] = {}
        self.loud_frames: dict[str, int] = {}
        self.speakers: set[str] = set()
        self.others: set[str] = set()  # the participants it saw, when the call was settled
        self._tasks: list[asyncio.Task[None]] = []
        self._streams: list[rtc.VideoStream | rtc.AudioStream] = []

        def subscribed(
            track: rtc.RemoteTrack,
            publication: rtc.RemoteTrackPublication,
            publisher: rtc.RemoteParticipant,
        ) -> None:
            self.tracks.setdefault(publisher.identity, []).append(track)
            read = self._watch if track.kind == rtc.TrackKind.KIND_VIDEO else self._listen
            self._tasks.append(asyncio.create_task(read(track, publisher.identity)))

        room.on("track_subscribed", subscribed)
        room.on(
            "active_speakers_changed",
            lambda speakers: self.speakers.update(p.identity for p in speakers),
        )

    async def _watch(self, track: rtc.RemoteTrack, publisher: str) -> None:
        stream = rtc.VideoStream(track, capacity=1)
        self._streams.append(stream)
        async for event in stream:
            self.video_sizes.setdefault(publisher, set()).add(
                (event.frame.width, event.frame.height)
            )
            self.video_frames[publisher] = self.video_frames.get(publisher, 0) + 1

    async def _listen(self, track: rtc.RemoteTrack, publisher: str) -> None:
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1, frame_size_ms=100)
        self._streams.append(stream)
        async for event in stream:
            samples = np.frombuffer(bytes(event.frame.data), dtype=np.int16)
            if samples.size and int(np.abs(samples).max()) > self.LOUD:
                self.loud_frames[publisher] = self.loud_frames.get(publisher, 0) + 1

    def heard(self, publisher: str) -> bool:
        return self.loud_frames.get(publisher, 0) >= 5  # half a second of the tone

    def frames(self, publisher: str, kind: str) -> int:
        """Video frames decoded, or audio frames with the tone, from one publisher so far."""
        counts = self.video_frames if kind == "video" else self.loud_frames
        return counts.get(publisher, 0)

    async def flowing(self, publisher: str, kind: str, seconds: float = 1.5) -> bool:
        before = self.frames(publisher, kind)
        await asyncio.sleep(seconds)
        return self.frames(publisher, kind) > before

    async def seen(self) -> tuple[dict[str, set[tuple[int, int]]], set[str]]:
        """(video sizes decoded by publisher, publishers heard)."""
        heard = {publisher for publisher in self.loud_frames if self.heard(publisher)}
        return {k: set(v) for k, v in self.video_sizes.items()}, heard

    def video_from(self) -> set[str]:
        return {
            who
            for who, tracks in self.tracks.items()
            for track in tracks
            if track.kind == rtc.TrackKind.KIND_VIDEO
        }

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for stream in self._streams:
            await stream.aclose()
