#!/usr/bin/env python3
"""Measures this repo's SFU against stock aiortc MediaRelay and Janus's videoroom, same load.

The servers, each a process of its own started fresh for every phase and stopped by PID:

* sfu: this repo's SFU (`python -m sfu CONFIG.yaml`): packet-level forwarding on aiortc,
  through our call page's protocol (`/ws`);
* livekit: the same SFU through LiveKit's protocol (`/rtc`), as Element Call and Element X
  reach it: one forwarded stream per published track (`sfu/livekit/media.py`);
* relay: aiortc's `MediaRelay` (bench/sfu_load/relay.py): the publisher's video is decoded
  once and re-encoded by every viewer's sender;
* janus: the videoroom plugin of Debian's `janus` (installed through apt if missing), with a
  config folder of its own (only the videoroom plugin and the HTTP transport), driven through
  its HTTP API.

The load is the same for all three: one publisher sends 320×240 VP8 at 15 fps, moving and
noisy, each frame stamped with its wall-clock time as a barcode (bench/sfu_load/media.py), to
--viewers viewers. Its encoder is held at 500 kbit/s whatever the server's REMB asks (else
every server would get the load its own bandwidth estimate allows); the lowest ask is printed.
One viewer (the meter) decodes every frame and reads the stamp back: latency = arrival −
stamp, on the one clock of this host. The others decode nothing (in their
process aiortc's `get_decoder` is replaced by one that hands frames on undecoded, and the viewer
counts them), so that the clients stay cheap. The publisher, the meter and the cheap viewers are
three processes besides the server's, so the server's CPU is its own; when taskset and two
cores are there, the server runs on core 0 and every client on core 1.

Phases, one after the other: direct (the publisher serves the meter itself, no server: the
latency baseline), then for each server 1 viewer (the meter alone) and --viewers viewers (the
meter and --viewers − 1 cheap ones). In each phase, once every viewer has had a frame, --warm-up
seconds pass, then a window of --seconds is marked at its start and end in every process at
once. Over the window: the server process's CPU (utime + stime of all its threads, from
/proc/PID/stat, in cores), the load of core 0 that was not the server, the clients' CPU, the RTP
packets the publisher sent and the viewers received (aiortc's getStats, summed over viewers:
what left the server), the lowest REMB the publisher got, every viewer's frame rate, and the
meter's latency p50 / p95 and unreadable stamps.

Printed: a row per phase, then per server its CPU with --viewers viewers, the marginal CPU per
viewer (CPU_N − CPU_1) / (N − 1), packets/s out, the marginal CPU per packet out (the same
difference over the difference of packet rates: fair even if the rates differ), added latency
p50 / p95 (the phase's percentile minus the direct phase's, each) and the worst viewer's frame
rate; then the targets with PASS or MISS: our CPU per viewer ≤ 0.005 core, our added latency
p50 ≤ 20 ms, our CPU per viewer within 2× Janus's, through LiveKit's protocol within 1× Janus's
and 5 ms added at p50 (issue 12), and MediaRelay's CPU per viewer beside ours (expected
~0.05). A miss is a result, not an error: the exit status is 0 either way.

    .venv/bin/python bench/sfu.py [--viewers 20] [--seconds 15] [--warm-up 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
)  # for the client and server processes

from bench.sfu_load.media import FPS, HEIGHT, WIDTH  # noqa: E402
from bench.sfu_load.processes import (  # noqa: E402
    READY_SECONDS,
    BenchFailed,
    Client,
    Mark,
    mark,
    run_script,
    spawn_client,
)
from bench.sfu_load.report import (  # noqa: E402
    SERVERS,
    Phase,
    print_phases,
    print_summaries,
    print_targets,
    summarize,
)
from bench.sfu_load.servers import (  # noqa: E402
    Server,
    log_tail,
    pinning,
    start_server,
)
from bench.sfu_load.signalling import Target  # noqa: E402
from tests.integration.harness import free_port  # noqa: E402

CLIENT = "bench.sfu_load.client"


def phase_of(kind: str, viewers: int, first: Mark, last: Mark, pinned: bool) -> Phase:
    seconds = last.time - first.time
    publisher, *watchers = zip(first.totals, last.totals, strict=True)
    fps, received, latencies, bad = [], 0, [], 0
    for start, end in watchers:
        span = end["time"] - start["time"]
        fps += [(b - a) / span for a, b in zip(start["frames"], end["frames"], strict=True)]
        received += (end["packets_received"] - start["packets_received"]) / span
        latencies += end["latencies_ms"]
        bad += end["bad_stamps"] - start["bad_stamps"]
    server_cpu = (last.server_cpu - first.server_cpu) / seconds
    return Phase(
        kind=kind,
        viewers=viewers,
        server_cpu=None if kind == "direct" else server_cpu,
        other_load=(last.core0 - first.core0) / seconds - server_cpu if pinned else None,
        clients_cpu=(last.clients_cpu - first.clients_cpu) / seconds,
        sent_pps=(publisher[1]["packets_sent"] - publisher[0]["packets_sent"])
        / (publisher[1]["time"] - publisher[0]["time"]),
        lowest_remb=publisher[1]["lowest_remb"],
        received_pps=received,
        fps=fps,
        latencies_ms=latencies,
        bad_stamps=bad,
    )


async def run_phase(
    kind: str,
    viewers: int,
    args: argparse.Namespace,
    folder: Path,
    pins: tuple[list[str], list[str]] | None,
) -> Phase:
    folder.mkdir(parents=True)
    server_prefix, client_prefix = pins or ([], [])
    server: Server | None = None
    clients: list[Client] = []
    try:
        if kind == "direct":
            target = Target("direct", f"http://127.0.0.1:{free_port()}")
        else:
            server = await start_server(kind, folder, server_prefix)
            target = server.target

        async def spawn(role: str, count: int = 1) -> Client:
            argv = [role, target.to_json(), "--viewers", str(count)]
            return await spawn_client(role, CLIENT, argv, folder, client_prefix)

        publisher = await spawn("publisher")
        clients.append(publisher)
        await publisher.expect("ready", READY_SECONDS)
        clients.append(await spawn("meter"))
        if viewers > 1:
            clients.append(await spawn("crowd", viewers - 1))
        await asyncio.gather(*(c.expect("ready", READY_SECONDS) for c in clients[1:]))
        await asyncio.sleep(args.warm_up)
        server_pids = server.pids if server else []
        first = await mark(server_pids, clients, pins is not None)
        await asyncio.sleep(args.seconds)
        last = await mark(server_pids, clients, pins is not None)
        return phase_of(kind, viewers, first, last, pins is not None)
    except TimeoutError:
        logs = "\n".join(f"-- {c.role}:\n{log_tail(c.log)}" for c in clients)
        raise BenchFailed(f"{kind} with {viewers} viewer(s): a client timed out\n{logs}") from None
    finally:
        for client in clients:
            await client.stop()
        if server is not None:
            await server.stop()


async def bench(args: argparse.Namespace, tmp: Path) -> None:
    pins = pinning()  # before this process pins itself to core 1
    print(
        f"SFU bench: 1 publisher ({WIDTH}×{HEIGHT} VP8, {FPS} fps) → {args.viewers} viewers"
        f" (1 decoding + {args.viewers - 1} counting), warm-up {args.warm_up:g} s,"
        f" window {args.seconds:g} s"
    )
    if pins:
        os.sched_setaffinity(0, {1})
        print("pinned with taskset: server on core 0; publisher, viewers and this script on 1")
    else:
        print("not pinned (no taskset or fewer than 2 cores): CPU shares may mix")
    phases: list[Phase] = []
    plan = [("direct", 1)] + [(k, n) for k in args.kinds for n in (1, args.viewers)]
    for kind, viewers in plan:
        print(f"  {kind} ×{viewers} ...", flush=True)
        phases.append(await run_phase(kind, viewers, args, tmp / f"{kind}-{viewers}", pins))
    print()
    print_phases(phases)
    direct = phases[0]
    summaries = {}
    for kind in args.kinds:
        one, many = (p for p in phases if p.kind == kind)
        summaries[kind] = summarize(kind, one, many, direct)
    print_summaries(summaries, args.viewers)
    print_targets(summaries)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="sfu-bench-") as tmp:
        await bench(args, Path(tmp))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="SFU vs MediaRelay vs Janus under one load")
    parser.add_argument("--viewers", type=int, default=20, help="viewers per server (≥ 2)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window")
    parser.add_argument("--warm-up", type=float, default=5.0, help="before the window")
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=SERVERS,
        default=[kind for kind in SERVERS if kind != "edges"],
        help="the servers to measure (edges: an origin and two edges, for many viewers)",
    )
    args = parser.parse_args()
    if args.viewers < 2:
        parser.error("--viewers must be at least 2 (the marginal cost needs 1 and N)")
    return args


if __name__ == "__main__":
    run_script(main, parse_args())
