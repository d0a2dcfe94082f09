"""The load's media: stamped 320×240 15 fps video, its barcode, and a decoder that only counts.

The publisher's VP8 encoder is held at a fixed 500 kbit/s (aiortc's default start): aiortc
otherwise follows the REMB the receiving end sends, and each server estimates differently (Janus
sends none without a room bitrate; an aiortc receiver's estimate halved the publisher's rate
under load in a trial run), which would give each server a different load. The REMB values
are recorded instead, and reported.

Every frame carries the wall-clock time of its making (`time.time()` in ms, 42 bits, plus a
6-bit check) as black and white blocks of 13×16 px in the top 32 luma rows: big enough that
VP8's quantisation does not flip them. The rest of the frame is a diagonal gradient that moves
every frame with a moving square of noise, so the encoder has real work and fills its
bitrate as a busy camera would, not as a still picture.
"""

from __future__ import annotations

import asyncio
import fractions
import os
import time
from typing import Any

import aiortc.rtcrtpreceiver
from aiortc import VideoStreamTrack
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

WIDTH, HEIGHT, FPS = 320, 240, 15
BITRATE = 500_000
CLOCK_RATE = 90_000
TIME_BASE = fractions.Fraction(1, CLOCK_RATE)
STAMP_BITS, CHECK_BITS = 42, 6
CHECK_MODULUS = 61  # the check is the stamp modulo this prime, in CHECK_BITS bits
BLOCK_W, BLOCK_H = 13, 16
BLOCKS_PER_ROW = 24  # 2 rows of 24 blocks: 312 px wide, 32 px tall
BARCODE_ROWS = 2
BLACK, WHITE, GREY = 16, 235, 128
NOISE_SIZE = 64
_GRADIENT = bytes((i * 3) % 256 for i in range(2 * WIDTH))


def stamp_bits(stamp_ms: int) -> list[int]:
    """The barcode's bits, most significant first: the stamp, then its check."""
    word = (stamp_ms % (1 << STAMP_BITS)) << CHECK_BITS | stamp_ms % CHECK_MODULUS
    total = STAMP_BITS + CHECK_BITS
    return [(word >> (total - 1 - i)) & 1 for i in range(total)]


def read_stamp(luma: bytes, line_size: int) -> int | None:
    """The stamp a decoded frame's luma plane carries; None if its check does not match."""
    word = 0
    for i in range(STAMP_BITS + CHECK_BITS):
        row, block = divmod(i, BLOCKS_PER_ROW)
        y = row * BLOCK_H + BLOCK_H // 2
        x = block * BLOCK_W + BLOCK_W // 2
        word = word << 1 | (luma[y * line_size + x] > GREY)
    stamp, check = word >> CHECK_BITS, word & ((1 << CHECK_BITS) - 1)
    return stamp if stamp % CHECK_MODULUS == check else None


def _luma(stamp_ms: int, index: int, line_size: int) -> bytes:
    pad = bytes([GREY]) * (line_size - BLOCKS_PER_ROW * BLOCK_W)
    bits = stamp_bits(stamp_ms)
    rows = []
    for row in range(BARCODE_ROWS):
        chunk = bits[row * BLOCKS_PER_ROW : (row + 1) * BLOCKS_PER_ROW]
        line = b"".join(bytes([WHITE if bit else BLACK]) * BLOCK_W for bit in chunk) + pad
        rows.extend([line] * BLOCK_H)
    tail = bytes(line_size - WIDTH)
    noise_x = index * 5 % (WIDTH - NOISE_SIZE)
    noise_top = BARCODE_ROWS * BLOCK_H + 40
    noise = os.urandom(NOISE_SIZE * NOISE_SIZE)
    for y in range(BARCODE_ROWS * BLOCK_H, HEIGHT):
        start = (y + 4 * index) % WIDTH
        line = _GRADIENT[start : start + WIDTH]
        if noise_top <= y < noise_top + NOISE_SIZE:
            n = (y - noise_top) * NOISE_SIZE
            line = line[:noise_x] + noise[n : n + NOISE_SIZE] + line[noise_x + NOISE_SIZE :]
        rows.append(line + tail)
    return b"".join(rows)


class StampedVideo(VideoStreamTrack):
    """320×240 VP8-bound video at 15 fps (aiortc's base track is fixed at 30), stamped."""

    def __init__(self) -> None:
        super().__init__()
        self._first: float | None = None
        self._index = 0

    async def next_timestamp(self) -> tuple[int, fractions.Fraction]:
        if self.readyState != "live":
            raise MediaStreamError
        if self._first is None:
            self._first = time.time()
        else:
            self._index += 1
            await _sleep_until(self._first + self._index / FPS)
        return self._index * CLOCK_RATE // FPS, TIME_BASE

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
        luma, *chroma = frame.planes
        luma.update(_luma(int(time.time() * 1000), self._index, luma.line_size))
        for plane in chroma:
            plane.update(bytes([GREY]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


async def _sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.time()))


class CountingDecoder:
    """Stands in for a real decoder: hands each reassembled frame on undecoded.

    The receiver's track then yields aiortc's `JitterFrame` objects instead of pictures, one
    per encoded frame, which the cheap viewer counts; nothing is decoded.
    """

    def decode(self, encoded_frame: Any) -> list[Any]:
        return [encoded_frame]


def stop_decoding() -> None:
    """Make every receiver created from now on in this process count frames, not decode them."""
    setattr(aiortc.rtcrtpreceiver, "get_decoder", lambda codec: CountingDecoder())  # noqa: B010


def fix_bitrate(asked: list[int], bitrate: int = BITRATE) -> None:
    """Keep every VP8 encoder of this process at `bitrate`; append each REMB's ask to `asked`."""

    def get(encoder: Vp8Encoder) -> int:
        return bitrate

    def ask(encoder: Vp8Encoder, bitrate: int) -> None:
        asked.append(bitrate)

    setattr(Vp8Encoder, "target_bitrate", property(get, ask))  # noqa: B010
