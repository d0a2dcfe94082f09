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
