"""The stock aiortc relay that `bench/sfu.py` compares against: ``MediaRelay``, as documented.

    python -m bench.sfu_load.relay --port PORT

``POST /publish`` takes the publisher's offer: its video is received and decoded as any aiortc
track is. ``POST /watch`` takes a viewer's offer and adds ``MediaRelay().subscribe(video)`` to
the viewer's connection, so every viewer's sender encodes its own copy of each frame: one decode
in, one VP8 encode per viewer out, which is what the comparison is about. A ``MediaBlackhole``
keeps the source drained while no viewer is there (otherwise decoded frames would pile up in
the source track's queue until the first viewer came). ``GET /health`` answers once listening.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole, MediaRelay

SOURCE_WAIT_SECONDS = 10.0


class RelayServer:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.source: asyncio.Future[MediaStreamTrack] = asyncio.Future()
        self.pcs: list[RTCPeerConnection] = []
        self.blackhole = MediaBlackhole()

    @staticmethod
    async def _take_offer(pc: RTCPeerConnection, request: web.Request) -> None:
        offer = await request.json()
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))

    async def publish(self, request: web.Request) -> web.Response:
        if self.source.done():
            return web.Response(status=409, text="already publishing")
        pc = RTCPeerConnection()
        self.pcs.append(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video" and not self.source.done():
                self.source.set_result(track)

        await self._take_offer(pc, request)  # fires on_track
        if not self.source.done():
            return web.Response(status=400, text="the offer has no video")
        await pc.setLocalDescription(await pc.createAnswer())
        self.blackhole.addTrack(self.relay.subscribe(self.source.result(), buffered=False))
        await self.blackhole.start()
        return web.json_response({"sdp": pc.localDescription.sdp, "type": "answer"})

    async def watch(self, request: web.Request) -> web.Response:
        try:
            source = await asyncio.wait_for(asyncio.shield(self.source), SOURCE_WAIT_SECONDS)
        except TimeoutError:
            return web.Response(status=409, text="nobody publishes")
        pc = RTCPeerConnection()
        self.pcs.append(pc)
        await self._take_offer(pc, request)
        pc.addTrack(self.relay.subscribe(source))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp, "type": "answer"})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def shutdown(self, app: web.Application) -> None:
        await self.blackhole.stop()
        for pc in self.pcs:
            await pc.close()


async def make_app() -> web.Application:
    server = RelayServer()
    app = web.Application()
    app.router.add_post("/publish", server.publish)
    app.router.add_post("/watch", server.watch)
    app.router.add_get("/health", server.health)
    app.on_shutdown.append(server.shutdown)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="aiortc MediaRelay server for bench/sfu.py")
    parser.add_argument("--port", type=int, required=True)
    web.run_app(make_app(), host="127.0.0.1", port=parser.parse_args().port, print=None)


if __name__ == "__main__":
    main()
