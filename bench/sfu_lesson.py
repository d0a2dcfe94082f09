#!/usr/bin/env python3
"""A video lesson through this repo's SFU (LiveKit's protocol) and Janus's videoroom, same load.

Issue 12's lesson: one teacher (1280×720 VP8 at 15 fps and a speaking microphone) and --pupils
pupils, each with a microphone through Opus DTX: --speaking of them speak (a packet every
20 ms, loud), the others are silent (a packet every 400 ms, as DTX leaves it). Everyone
receives everything but their own: the teacher's video and voice and every pupil's voice
(`bench/sfu_load/lesson_media.py`, `bench/sfu_load/lesson.py`).

Servers, each started fresh and stopped by PID (`bench/sfu_load/servers.py`):

* livekit: `python -m sfu` through LiveKit's protocol (`/rtc`), as Element X and Element
  Call reach it: every published track has its own forwarded stream to every subscriber;
* janus: Debian's janus, videoroom plugin, every participant a publisher and one multistream
  subscriber of every other feed.

Per server, once every participant receives the teacher's video and at least --speaking
voices, --warm-up seconds pass, then over --seconds: the server's CPU (all threads, in cores),
its CPU per participant (over teacher and pupils), the RTP packets that reached it and left it
(what the clients sent and received), and the worst frame rate of the teacher's video at a
pupil. When taskset and two cores are there the server runs on core 0, the clients on core 1.

Printed: a row per server, then the target: CPU per participant through LiveKit's protocol
≤ 1.0× Janus's (issue 12; a miss is a result, not an error: exit status 0 either way).

    .venv/bin/python bench/sfu_lesson.py [--pupils 30] [--speaking 3] [--processes 2]
        [--seconds 15] [--warm-up 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

import attrs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
)  # for the client and server processes

from bench.sfu_load.media import FPS  # noqa: E402
from bench.sfu_load.processes import (  # noqa: E402
    READY_SECONDS,
    BenchFailed,
    Client,
    Mark,
    mark,
    run_script,
    spawn_client,
)
from bench.sfu_load.report import SERVERS, verdict  # noqa: E402
from bench.sfu_load.servers import (  # noqa: E402
    log_tail,
    pinning,
    start_server,
)

CLIENT = "bench.sfu_load.lesson"
KINDS = ("livekit", "janus")
MAX_TIMES_JANUS = 1.0


@attrs.frozen
class Lesson:
    kind: str
    participants: int
    server_cpu: float
    clients_cpu: float
    in_pps: float  # RTP packets the clients sent: what reached the server
    out_pps: float  # RTP packets the clients received: what left it
    worst_video_fps: float
    fewest_voices: int

    @property
    def per_participant(self) -> float:
        return self.server_cpu / self.participants

    @property
    def us_per_packet(self) -> float:
        """Server CPU per packet that left it: fair even where the clients fell behind."""
        return self.server_cpu / self.out_pps * 1e6


def lesson_of(kind: str, participants: int, first: Mark, last: Mark) -> Lesson:
    seconds = last.time - first.time

    def rate(field: str) -> float:
        pairs = zip(first.totals, last.totals, strict=True)
        return float(sum(b[field] - a[field] for a, b in pairs))

    fps = [
        (b - a) / seconds
        for start, end in zip(first.totals, last.totals, strict=True)
        for a, b in zip(start["video_frames"], end["video_frames"], strict=True)
    ]
    return Lesson(
        kind=kind,
        participants=participants,
        server_cpu=(last.server_cpu - first.server_cpu) / seconds,
        clients_cpu=(last.clients_cpu - first.clients_cpu) / seconds,
        in_pps=rate("packets_sent") / seconds,
        out_pps=rate("packets_received") / seconds,
        worst_video_fps=min(fps),
        fewest_voices=min(v for totals in last.totals for v in totals["voices_heard"]),
    )


async def run_lesson(
    kind: str, args: argparse.Namespace, folder: Path, server_prefix: list[str]
) -> Lesson:
    client_prefix: list[str] = []  # thirty-one clients need more than a core: they float
    server = await start_server(kind, folder, server_prefix)
    clients: list[Client] = []
    try:
        # The teacher first (in Janus it makes the room), then the class in shares.
        shares: list[tuple[str, list[str]]] = [("teacher", [])]
        size = -(-args.pupils // args.processes)
        for start in range(0, args.pupils, size):
            share = ["--of", str(start), str(min(start + size, args.pupils))]
            shares.append((f"pupils-{start}", share))
        for role, share in shares:
            argv = [role.split("-")[0], server.target.to_json(), *share]
            argv += ["--pupils", str(args.pupils), "--speaking", str(args.speaking)]
            client = await spawn_client(role, CLIENT, argv, folder, client_prefix)
            clients.append(client)
            await client.expect("published", READY_SECONDS)
        for client in clients:
            client.send("subscribe")
        await asyncio.gather(*(c.expect("ready", READY_SECONDS) for c in clients))
        await asyncio.sleep(args.warm_up)
        first = await mark(server.pids, clients, pinned=False)
        await asyncio.sleep(args.seconds)
        last = await mark(server.pids, clients, pinned=False)
        return lesson_of(kind, args.pupils + 1, first, last)
    except TimeoutError:
        logs = "\n".join(f"-- {c.role}:\n{log_tail(c.log)}" for c in clients)
        raise BenchFailed(f"{kind}: a client timed out\n{logs}") from None
    finally:
        for client in clients:
            await client.stop()
        await server.stop()


def print_lessons(lessons: dict[str, Lesson]) -> None:
    print(
        f"{'server':<22}{'CPU':>8}{'CPU/participant':>17}{'in pkt/s':>10}{'out pkt/s':>11}"
        f"{'µs/pkt out':>12}"
        f"{'clients CPU':>13}{'worst video fps':>17}{'fewest voices':>15}"
    )
    for lesson in lessons.values():
        print(
            f"{SERVERS[lesson.kind]:<22}{lesson.server_cpu:>8.3f}{lesson.per_participant:>17.4f}"
            f"{lesson.in_pps:>10.0f}{lesson.out_pps:>11.0f}{lesson.us_per_packet:>12.0f}"
            f"{lesson.clients_cpu:>13.3f}"
            f"{lesson.worst_video_fps:>17.1f}{lesson.fewest_voices:>15}"
        )
    print(
        "CPU in cores (all the server's threads); per participant: over the teacher and the"
        " pupils;\nin/out pkt/s: RTP packets all clients sent / received; worst video fps: the"
        " teacher's video\nat the slowest pupil; fewest voices: the fewest audio tracks any"
        " participant received."
    )
    for lesson in lessons.values():
        if lesson.worst_video_fps < 0.9 * FPS:
            print(f"NOTE: {SERVERS[lesson.kind]}: a pupil got {lesson.worst_video_fps:.1f} fps.")
    ours, janus = lessons["livekit"], lessons["janus"]
    times = ours.per_participant / janus.per_participant
    print(
        f"\ntarget: CPU per participant through LiveKit's protocol ≤ {MAX_TIMES_JANUS:.0f}×"
        f" Janus's ({janus.per_participant:.4f}): {times:.2f}×"
        f"  {verdict(times <= MAX_TIMES_JANUS)}"
    )


async def main(args: argparse.Namespace) -> None:
    pins = pinning()
    print(
        f"SFU lesson bench: 1 teacher (1280×720 VP8 {FPS} fps + voice), {args.pupils} pupils"
        f" ({args.speaking} speaking, the others DTX), warm-up {args.warm_up:g} s,"
        f" window {args.seconds:g} s"
    )
    server_prefix = pins[0] if pins else []
    if pins:
        print("server pinned to core 0 with taskset; the clients run on any core")
    lessons = {}
    with tempfile.TemporaryDirectory(prefix="sfu-lesson-bench-") as tmp:
        for kind in KINDS:
            print(f"  {kind} ...", flush=True)
            lessons[kind] = await run_lesson(kind, args, Path(tmp) / kind, server_prefix)
    print()
    print_lessons(lessons)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="a lesson through our SFU and Janus")
    parser.add_argument("--pupils", type=int, default=30, help="pupils in the lesson")
    parser.add_argument("--speaking", type=int, default=3, help="pupils who speak")
    parser.add_argument("--processes", type=int, default=2, help="client processes of pupils")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window")
    parser.add_argument("--warm-up", type=float, default=5.0, help="before the window")
    args = parser.parse_args()
    if not 1 <= args.speaking <= args.pupils:
        parser.error("--speaking must be between 1 and --pupils")
    if not 1 <= args.processes <= args.pupils:
        parser.error("--processes must be between 1 and --pupils")
    return args


if __name__ == "__main__":
    run_script(main, parse_args())
