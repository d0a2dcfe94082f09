"""What bench/sfu.py prints: a row per phase, a summary per server, the issue's targets."""

from __future__ import annotations

import statistics

import attrs

from bench.sfu_load.media import FPS

SERVERS = {
    "sfu": "ours (sfu/)",
    "edges": "ours, 2 edges",
    "livekit": "ours, LiveKit proto",
    "relay": "aiortc MediaRelay",
    "janus": "Janus videoroom",
}
MAX_CPU_PER_VIEWER = 0.005
MAX_ADDED_P50_MS = 20.0
MAX_TIMES_JANUS = 2.0
#: Issue 12's goals for LiveKit's apps: per viewer no dearer than Janus, 5 ms added at p50.
MAX_LIVEKIT_TIMES_JANUS = 1.0
MAX_LIVEKIT_ADDED_P50_MS = 5.0
RELAY_EXPECTED_PER_VIEWER = 0.05
SHARED_CORE_WARNING = 0.2  # cores of other work on the server's core worth a note


@attrs.frozen
class Phase:
    kind: str  # direct, sfu, relay, janus
    viewers: int
    server_cpu: float | None  # cores; None for direct
    other_load: float | None  # cores of core 0 that were not the server's
    clients_cpu: float
    sent_pps: float
    lowest_remb: int | None  # bit/s: the lowest a REMB to the publisher asked for
    received_pps: float
    fps: list[float]
    latencies_ms: list[float]
    bad_stamps: int

    def percentile(self, p: int) -> float:
        if len(self.latencies_ms) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies_ms, n=100)[p - 1]


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def print_phases(phases: list[Phase]) -> None:
    print(
        f"{'phase':<18}{'server CPU':>11}{'other@core0':>12}{'clients CPU':>12}"
        f"{'pub pkt/s':>10}{'REMB kb/s':>10}{'out pkt/s':>10}{'worst fps':>10}"
        f"{'p50 ms':>8}{'p95 ms':>8}{'bad stamps':>11}"
    )
    for p in phases:
        remb = "–" if p.lowest_remb is None else f"{p.lowest_remb / 1000:.0f}"
        print(
            f"{p.kind + f' ×{p.viewers}':<18}{fmt(p.server_cpu):>11}{fmt(p.other_load):>12}"
            f"{p.clients_cpu:>12.3f}{p.sent_pps:>10.0f}{remb:>10}{p.received_pps:>10.0f}"
            f"{min(p.fps):>10.1f}"
            f"{p.percentile(50):>8.0f}{p.percentile(95):>8.0f}{p.bad_stamps:>11}"
        )
    print(
        "other@core0: load of the server's core that was not the server (a shared machine);"
        " clients CPU: the\npublisher's and viewers' processes; REMB: the lowest bitrate the"
        " server asked the publisher for\n(not followed: it stays at 500 kbit/s); out pkt/s:"
        " RTP packets all viewers received; bad stamps:\ndecoded frames whose barcode failed"
        " its check (left out of the latencies)."
    )
    busiest = max((p.other_load or 0.0) for p in phases)
    if busiest > SHARED_CORE_WARNING:
        print(
            f"NOTE: up to {busiest:.2f} core of other work ran on the server's core: CPU figures"
            " carry that noise."
        )


@attrs.frozen
class Summary:
    name: str
    cpu: float
    per_viewer: float
    out_pps: float
    us_per_packet: float  # marginal: server CPU per extra packet sent out
    added_p50: float
    added_p95: float
    worst_fps: float


def summarize(kind: str, one: Phase, many: Phase, direct: Phase) -> Summary:
    assert one.server_cpu is not None and many.server_cpu is not None
    return Summary(
        name=SERVERS[kind],
        cpu=many.server_cpu,
        per_viewer=(many.server_cpu - one.server_cpu) / (many.viewers - 1),
        out_pps=many.received_pps,
        us_per_packet=(many.server_cpu - one.server_cpu)
        / (many.received_pps - one.received_pps)
        * 1e6,
        added_p50=many.percentile(50) - direct.percentile(50),
        added_p95=many.percentile(95) - direct.percentile(95),
        worst_fps=min(many.fps),
    )


def print_summaries(summaries: dict[str, Summary], viewers: int) -> None:
    print(
        f"\n{'server':<20}{f'CPU ×{viewers}':>10}{'CPU/viewer':>12}{'out pkt/s':>11}"
        f"{'µs/pkt':>8}{'added p50 ms':>14}{'added p95 ms':>14}{'worst fps':>11}"
    )
    for s in summaries.values():
        print(
            f"{s.name:<20}{s.cpu:>10.3f}{s.per_viewer:>12.4f}{s.out_pps:>11.0f}"
            f"{s.us_per_packet:>8.0f}{s.added_p50:>14.1f}{s.added_p95:>14.1f}{s.worst_fps:>11.1f}"
        )
    print(
        f"CPU in cores (CPU-seconds per second, all threads); CPU/viewer is marginal: "
        f"(CPU ×{viewers} − CPU ×1) / {viewers - 1}; µs/pkt likewise per extra packet out.\n"
        "Added latency: the meter's percentile through the server minus the direct phase's."
    )
    for s in summaries.values():
        if s.worst_fps < 0.9 * FPS:
            print(f"NOTE: {s.name}: a viewer got {s.worst_fps:.1f} fps of {FPS}: overloaded.")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_targets(summaries: dict[str, Summary]) -> None:
    """The issues' targets for the servers measured; a target needs each server it names."""
    janus = summaries.get("janus")

    def times_janus(s: Summary) -> float:
        assert janus is not None
        return s.per_viewer / janus.per_viewer if janus.per_viewer > 0 else float("inf")

    print("\ntargets:")
    ours = summaries.get("sfu")
    if ours is not None:
        print(
            f"  our CPU per viewer ≤ {MAX_CPU_PER_VIEWER} core: {ours.per_viewer:.4f}"
            f"  {verdict(ours.per_viewer <= MAX_CPU_PER_VIEWER)}"
        )
        print(
            f"  our added latency p50 ≤ {MAX_ADDED_P50_MS:.0f} ms: {ours.added_p50:.1f} ms"
            f"  {verdict(ours.added_p50 <= MAX_ADDED_P50_MS)}"
        )
        if janus is not None:
            times = times_janus(ours)
            print(
                f"  our CPU per viewer ≤ {MAX_TIMES_JANUS:.0f}× Janus's ({janus.per_viewer:.4f}):"
                f" {times:.1f}×  {verdict(times <= MAX_TIMES_JANUS)}"
            )
    livekit = summaries.get("livekit")
    if livekit is not None:
        if janus is not None:
            times = times_janus(livekit)
            print(
                f"  LiveKit protocol: CPU per viewer ≤ {MAX_LIVEKIT_TIMES_JANUS:.0f}× Janus's:"
                f" {times:.2f}×  {verdict(times <= MAX_LIVEKIT_TIMES_JANUS)}"
            )
        print(
            f"  LiveKit protocol: added latency p50 ≤ {MAX_LIVEKIT_ADDED_P50_MS:.0f} ms:"
            f" {livekit.added_p50:.1f} ms"
            f"  {verdict(livekit.added_p50 <= MAX_LIVEKIT_ADDED_P50_MS)}"
        )
    edges = summaries.get("edges")
    if edges is not None:
        print(
            f"  over edges (origin and edges together): CPU per viewer {edges.per_viewer:.4f},"
            f" added latency p50 {edges.added_p50:.1f} ms"
            + (f", {times_janus(edges):.2f}× Janus's" if janus is not None else "")
        )
    relay = summaries.get("relay")
    if relay is not None and ours is not None:
        times_ours = relay.per_viewer / ours.per_viewer if ours.per_viewer > 0 else float("inf")
        print(
            f"  for comparison: MediaRelay CPU per viewer {relay.per_viewer:.4f}"
            f" (expected ~{RELAY_EXPECTED_PER_VIEWER}): {times_ours:.1f}× ours"
        )
