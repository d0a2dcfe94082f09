"""Synthetic media for LiveKit's Python SDK in tests: a camera with a moving picture and a
microphone with a tone, published as an app would publish them."""

from __future__ import annotations

import asyncio
import math

import numpy as np
from livekit import rtc

WIDTH, HEIGHT = 1280, 720
SAMPLE_RATE = 48000
FRAME_SAMPLES = SAMPLE_RATE // 100  # 10 ms


class Publisher:
    """Synthetic camera and microphone of one participant, fed until stopped."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    async def camera(self, room: rtc.Room) -> rtc.LocalTrackPublication:
        source = rtc.VideoSource(WIDTH, HEIGHT)
        track = rtc.LocalVideoTrack.create_video_track("camera", source)

        async def feed() -> None:
            shade = 0
            while True:
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
        source = rtc.AudioSource(SAMPLE_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
        tone = (np.sin(2 * math.pi * hz * np.arange(SAMPLE_RATE) / SAMPLE_RATE) * 12000).astype(
            np.int16
        )

        async def feed() -> None:
            at = 0
            while True:
                chunk = np.take(tone, range(at, at + FRAME_SAMPLES), mode="wrap")
                await source.capture_frame(
                    rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE, 1, FRAME_SAMPLES)
                )
                at = (at + FRAME_SAMPLES) % SAMPLE_RATE

        self._tasks.append(asyncio.create_task(feed()))
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await room.local_participant.publish_track(track, options)
        return track

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()


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
        for publisher, tracks in self.tracks.items():
            for track in tracks:
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
