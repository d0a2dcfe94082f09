"""Prometheus metrics of the SFU (issue 5 point 10), served at `GET /metrics`.

What an operator needs to see that calls are healthy: how many rooms, participants and
published streams there are (the call page's rooms and LiveKit's together); packets and
payload bytes in and out (per second is `rate()` of the counters); how long forwarding a
packet takes; how late the event loop runs, since one asyncio loop carries every packet and a
blocked loop is heard as choppy audio in every room at once; the call tokens refused, by
reason; and the process's own memory and CPU.

The numbers are read from the server's state when scraped (:class:`Snapshot`) rather than
updated on every change, so the hot forwarding path only bumps integers on its room's router
(`MediaRouter`, LiveKit's `TrackRouter`) and adds to `forward_seconds`. Counters must never go
down, so the server adds the totals of rooms that closed to the live ones (`retired_*`). Each
server has its own registry: several in one process (tests) do not collide, and the
process-wide default registry is left to whoever owns the process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: How often the event-loop lag ticker wakes; its lateness is the lag.
LAG_INTERVAL_SECONDS = 0.5


@attrs.frozen
class Snapshot:
    """The server's state at one scrape."""

    rooms: int = 0
    participants: int = 0
    streams: int = 0
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0  # RTP payload bytes
    bytes_out: int = 0
    forward_seconds: float = 0.0


class RouterCounters(Protocol):
    """What a snapshot reads of a room's `MediaRouter`."""

    received_packets: int
    forwarded_packets: int
    received_bytes: int
    forwarded_bytes: int
    forward_seconds: float

    @property
    def stream_count(self) -> int: ...


def snapshot(participants: int, routers: Sequence[RouterCounters], retired: Snapshot) -> Snapshot:
    """The server's state now: its rooms' routers, plus the totals of rooms already closed."""
    return Snapshot(
        rooms=len(routers),
        participants=participants,
        streams=sum(r.stream_count for r in routers),
        packets_in=retired.packets_in + sum(r.received_packets for r in routers),
        packets_out=retired.packets_out + sum(r.forwarded_packets for r in routers),
        bytes_in=retired.bytes_in + sum(r.received_bytes for r in routers),
        bytes_out=retired.bytes_out + sum(r.forwarded_bytes for r in routers),
        forward_seconds=retired.forward_seconds + sum(r.forward_seconds for r in routers),
    )


def retired_with(retired: Snapshot, router: RouterCounters) -> Snapshot:
    """The closed rooms' totals once `router`'s room closed too (counters never go down)."""
    return attrs.evolve(
        retired,
        packets_in=retired.packets_in + router.received_packets,
        packets_out=retired.packets_out + router.forwarded_packets,
        bytes_in=retired.bytes_in + router.received_bytes,
        bytes_out=retired.bytes_out + router.forwarded_bytes,
        forward_seconds=retired.forward_seconds + router.forward_seconds,
    )


def families(snap: Snapshot) -> list[Metric]:
    """The metric families of one snapshot (pure: tested without a registry)."""
    return [
        GaugeMetricFamily("sfu_rooms", "SFU rooms with at least one participant", snap.rooms),
        GaugeMetricFamily("sfu_participants", "Connected participants", snap.participants),
        GaugeMetricFamily("sfu_streams", "Published tracks being received", snap.streams),
        CounterMetricFamily("sfu_packets_in", "RTP packets received", snap.packets_in),
        CounterMetricFamily("sfu_packets_out", "RTP packets forwarded", snap.packets_out),
        CounterMetricFamily("sfu_bytes_in", "RTP payload bytes received", snap.bytes_in),
        CounterMetricFamily("sfu_bytes_out", "RTP payload bytes forwarded", snap.bytes_out),
        # Sum and count of the time from a packet's receipt to its last forward: the mean
        # forwarding delay is rate(sum) / rate(count). No buckets: observing a histogram per
        # packet would cost more than the forwarding it measures.
        SummaryMetricFamily(
            "sfu_forwarding_delay_seconds",
            "Time from receiving a packet to having sent it to every subscriber",
            count_value=snap.packets_in,
            sum_value=snap.forward_seconds,
        ),
    ]


class _StateCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from families(self._snapshot())


def lag(expected: float, actual: float) -> float:
    """How late a timer fired; never negative (an early wake-up is no lag)."""
    return max(0.0, actual - expected)


class SfuMetrics:
    """One server's registry: the state collector, the process's own (memory, CPU), the
    event-loop lag gauge and the auth routes' refusals."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StateCollector(snapshot))
        ProcessCollector(registry=self.registry)
        self.auth_refusals = Counter(
            "sfu_auth_refusals",
            "Call tokens refused, by reason (ru.sferum.reason, or the error code)",
            ["reason"],
            registry=self.registry,
        )
        self.loop_lag = Gauge(
            "sfu_event_loop_lag_seconds",
            "How late the last event-loop ticker fired",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def measure_loop_lag(
        self, interval: float = LAG_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Forever: sleep `interval`, record how much later than that the loop woke us."""
        while True:
            expected = clock() + interval
            await asyncio.sleep(interval)
            self.loop_lag.set(lag(expected, clock()))
