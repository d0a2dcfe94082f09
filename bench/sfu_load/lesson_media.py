"""The lesson bench's media: the teacher's 720p camera and the microphones, as DTX sends them.

* :class:`LessonVideo`: 1280×720 VP8 at 15 fps, held at :data:`LESSON_BITRATE` (see
  :func:`bench.sfu_load.media.fix_bitrate`): a teacher's camera at the resolution issue 12
  asks the apps to receive. The picture is a gradient that moves every frame, cycled from
  frames made once, so that making it costs the client little while the encoder still works;
* :class:`Voice`: a microphone through Opus with DTX, as Element X and the browsers send one.
  Speaking, a 20 ms frame of loud noise every 20 ms; silent, what DTX leaves of silence: one
  frame every 400 ms. aiortc writes each packet's audio level (RFC 6464) from the samples, so
  the SFUs see three loud voices and many quiet ones.
"""

from __future__ import annotations

import asyncio
import fractions
import os
import time

from aiortc import AudioStreamTrack, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

from bench.sfu_load.media import CLOCK_RATE, FPS, GREY, TIME_BASE

LESSON_WIDTH, LESSON_HEIGHT = 1280, 720
LESSON_BITRATE = 1_500_000
CYCLE = 2 * FPS  # distinct pictures, shown in turn
SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms
SPEAKING_PERIOD, DTX_PERIOD = 0.02, 0.4
AUDIO_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


def _picture(index: int) -> bytes:
    row = bytes((x + 6 * index) % 220 + 16 for x in range(LESSON_WIDTH))
    return b"".join(row[y % 64 :] + row[: y % 64] for y in range(LESSON_HEIGHT))


class _Paced:
    """Frames on a fixed period from the first one, late frames not made up by bursts."""

    def __init__(self, period: float) -> None:
        self._period = period
        self._first: float | None = None
        self.index = 0

    async def next(self) -> int:
        if self._first is None:
            self._first = time.time()
        else:
            self.index += 1
            deadline = self._first + self.index * self._period
            await asyncio.sleep(max(0.0, deadline - time.time()))
        return self.index


class LessonVideo(VideoStreamTrack):
    def __init__(self) -> None:
        super().__init__()
        self._pace = _Paced(1 / FPS)
        self._lumas = [_picture(i) for i in range(CYCLE)]

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._pace.next()
        frame = VideoFrame(width=LESSON_WIDTH, height=LESSON_HEIGHT, format="yuv420p")
        luma, *chroma = frame.planes
        if luma.line_size == LESSON_WIDTH:
            luma.update(self._lumas[index % CYCLE])
        for plane in chroma:
            plane.update(bytes([GREY]) * plane.buffer_size)
        frame.pts = index * CLOCK_RATE // FPS
        frame.time_base = TIME_BASE
        return frame


class Voice(AudioStreamTrack):
    def __init__(self, speaking: bool) -> None:
        super().__init__()
        self.speaking = speaking
        period = SPEAKING_PERIOD if speaking else DTX_PERIOD
        self._pace = _Paced(period)
        self._samples_per_period = round(SAMPLE_RATE * period)

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._pace.next()
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        size = frame.planes[0].buffer_size
        frame.planes[0].update(os.urandom(size) if self.speaking else bytes(size))
        frame.sample_rate = SAMPLE_RATE
        frame.pts = index * self._samples_per_period
        frame.time_base = AUDIO_TIME_BASE
        return frame
