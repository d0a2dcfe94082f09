"""One client process of `bench/sfu.py`: the publisher, the measuring viewer, or cheap viewers.

    python -m bench.sfu_load.client publisher|meter|crowd TARGET_JSON [--viewers K]

* ``publisher``: sends :class:`~bench.sfu_load.media.StampedVideo` to the target at a fixed
  bitrate (:func:`~bench.sfu_load.media.fix_bitrate`); for the ``direct`` target it is the
  server itself and answers its one viewer's ``POST /watch``;
* ``meter``: one viewer that decodes every frame and reads its stamp (latency = arrival minus
  stamp, both on this host's clock);
* ``crowd``: K viewers that decode nothing: :func:`~bench.sfu_load.media.stop_decoding` makes
  aiortc's receivers hand each reassembled frame on undecoded, and the viewer counts it.

It talks to `bench/sfu.py` over stdio: ``ready`` once published (the publisher) or once every
viewer has had a frame; then for each ``mark`` read on stdin, ``marked {json}`` with the running
totals (frames per viewer, RTP packets received or sent) and what was seen since the last mark
(the latencies; the lowest bitrate a REMB asked the publisher for); ``stop`` or the end of stdin
closes every connection and ends the process. Logs and errors go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import urllib.parse
from abc import ABC, abstractmethod
from typing import Any

import aiohttp
import attrs
from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from bench.sfu_load.media import StampedVideo, fix_bitrate, read_stamp, stop_decoding
from bench.sfu_load.signalling import HTTP_TIMEOUT, Signaller, Target, signaller

READY_TIMEOUT_SECONDS = 45.0


def say(line: str) -> None:
    print(line, flush=True)


async def packet_count(pc: RTCPeerConnection, kind: str) -> int:
    """RTP packets of one direction so far (`inbound-rtp` received or `outbound-rtp` sent)."""
    field = "packetsReceived" if kind == "inbound-rtp" else "packetsSent"
    report = await pc.getStats()
    return sum(getattr(s, field) for s in report.values() if s.type == kind)


async def wait_connected(pc: RTCPeerConnection) -> None:
    async with asyncio.timeout(READY_TIMEOUT_SECONDS):
        while pc.connectionState != "connected":
            if pc.connectionState in ("failed", "closed"):
                raise RuntimeError(f"the connection {pc.connectionState}")
            await asyncio.sleep(0.05)


class Role(ABC):
    @abstractmethod
    async def start(self, signaller: Signaller) -> None:
        """Connect; return once the role is ready to be measured."""

    @abstractmethod
    async def totals(self) -> dict[str, Any]:
        """The running totals a ``mark`` reports."""

    @abstractmethod
    async def close(self) -> None: ...


class Publisher(Role):
    def __init__(self) -> None:
        self.pcs: list[RTCPeerConnection] = []
        self._site: web.TCPSite | None = None
        self._remb_asks: list[int] = []
        fix_bitrate(self._remb_asks)

    async def start(self, signaller: Signaller) -> None:
        if signaller.target.kind == "direct":
            await self._serve(signaller.target.url)
            return
        pc = RTCPeerConnection()
        self.pcs.append(pc)
        pc.addTrack(StampedVideo())
        await signaller.publish(pc)
        await wait_connected(pc)

    async def _serve(self, url: str) -> None:
        """Be the server of the `direct` baseline: each ``POST /watch`` gets its own video."""

        async def watch(request: web.Request) -> web.Response:
            offer = await request.json()
            pc = RTCPeerConnection()
            self.pcs.append(pc)
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
            pc.addTrack(StampedVideo())
            await pc.setLocalDescription(await pc.createAnswer())
            return web.json_response({"sdp": pc.localDescription.sdp, "type": "answer"})

        app = web.Application()
        app.router.add_post("/watch", watch)
        runner = web.AppRunner(app)
        await runner.setup()
        address = urllib.parse.urlsplit(url)
        self._site = web.TCPSite(runner, address.hostname, address.port)
        await self._site.start()

    async def totals(self) -> dict[str, Any]:
        sent = [await packet_count(pc, "outbound-rtp") for pc in self.pcs]
        lowest_ask = min(self._remb_asks, default=None)
        self._remb_asks.clear()
        return {"time": time.monotonic(), "packets_sent": sum(sent), "lowest_remb": lowest_ask}

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()
        if self._site is not None:
            await self._site.stop()


@attrs.define(eq=False)
class Viewer:
    """One viewer's connection; the measuring one reads each decoded frame's stamp."""

    name: str
    measure: bool
    pc: RTCPeerConnection = attrs.field(factory=RTCPeerConnection)
    frames: int = 0
    latencies_ms: list[float] = attrs.field(factory=list)
    bad_stamps: int = 0
    consumer: asyncio.Task[None] | None = None

    async def connect(self, signaller: Signaller) -> None:
        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video" and self.consumer is None:
                self.consumer = asyncio.create_task(self._consume(track))

        await signaller.watch(self.pc, self.name)

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                arrival_ms = time.time() * 1000
                self.frames += 1
                if self.measure:
                    assert isinstance(frame, VideoFrame)
                    self._read_stamp(frame, arrival_ms)

    def _read_stamp(self, frame: VideoFrame, arrival_ms: float) -> None:
        luma = frame.planes[0]
        stamp = read_stamp(bytes(luma), luma.line_size)
        if stamp is None:
            self.bad_stamps += 1
        else:
            self.latencies_ms.append(arrival_ms - stamp)

    async def close(self) -> None:
        if self.consumer is not None:
            self.consumer.cancel()
        await self.pc.close()


class Viewers(Role):
    """``meter`` (one decoding viewer) or ``crowd`` (cheap ones); ready once all have video."""

    def __init__(self, names: list[str], measure: bool) -> None:
        self.viewers = [Viewer(name, measure) for name in names]

    async def start(self, signaller: Signaller) -> None:
        await asyncio.gather(*(v.connect(signaller) for v in self.viewers))
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            while not all(v.frames for v in self.viewers):
                await asyncio.sleep(0.05)

    async def totals(self) -> dict[str, Any]:
        received = [await packet_count(v.pc, "inbound-rtp") for v in self.viewers]
        latencies = [ms for v in self.viewers for ms in v.latencies_ms]
        for viewer in self.viewers:
            viewer.latencies_ms.clear()
        return {
            "time": time.monotonic(),
            "frames": [v.frames for v in self.viewers],
            "packets_received": sum(received),
            "latencies_ms": latencies,
            "bad_stamps": sum(v.bad_stamps for v in self.viewers),
        }

    async def close(self) -> None:
        for viewer in self.viewers:
            await viewer.close()


def role_of(args: argparse.Namespace) -> Role:
    if args.role == "publisher":
        return Publisher()
    if args.role == "meter":
        return Viewers(["meter"], measure=True)
    stop_decoding()
    return Viewers([f"crowd-{i}" for i in range(args.viewers)], measure=False)


async def commands() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run(args: argparse.Namespace) -> None:
    role = role_of(args)
    stdin = await commands()
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        signalling = signaller(Target.from_json(args.target), http)
        try:
            await role.start(signalling)
            say("ready")
            while (line := (await stdin.readline()).decode().strip()) not in ("stop", ""):
                if line == "mark":
                    say("marked " + json.dumps(await role.totals()))
        finally:
            await role.close()
            await signalling.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="a client process of bench/sfu.py")
    parser.add_argument("role", choices=("publisher", "meter", "crowd"))
    parser.add_argument("target", help="the Target as JSON")
    parser.add_argument("--viewers", type=int, default=1, help="crowd: how many viewers")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
