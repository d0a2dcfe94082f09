"""Table tests for SequenceRewriter: wraparound, reordering, loss and source switches."""

from __future__ import annotations

import pytest

from sfu.rewriting import Rewritten, SequenceRewriter

OUT_SSRC = 0xABCDEF


def rewriter(next_seq: int = 1000, next_ts: int = 50_000) -> SequenceRewriter:
    return SequenceRewriter(ssrc=OUT_SSRC, clock_rate=48000, next_seq=next_seq, next_ts=next_ts)


# (ssrc, seq, ts, arrival) -> expected (seq, ts) or None for "dropped"
Case = tuple[tuple[int, int, int, float], tuple[int, int] | None]

CASES: dict[str, list[Case]] = {
    "offsets preserved within a source": [
        ((1, 500, 9000, 0.00), (1000, 50_000)),
        ((1, 501, 9960, 0.02), (1001, 50_960)),
        ((1, 503, 11880, 0.06), (1003, 52_880)),  # loss keeps its gap for NACK
        ((1, 502, 10920, 0.07), (1002, 51_920)),  # late packet keeps its place
    ],
    "incoming sequence wraps": [
        ((1, 65534, 0, 0.00), (1000, 50_000)),
        ((1, 65535, 960, 0.02), (1001, 50_960)),
        ((1, 0, 1920, 0.04), (1002, 51_920)),
        ((1, 1, 2880, 0.06), (1003, 52_880)),
    ],
    "outgoing sequence and timestamp wrap": [
        ((1, 10, 4_294_967_000, 0.00), (65535, 4_294_967_295)),
        ((1, 11, 4_294_967_960 % 2**32, 0.02), (0, 959)),
    ],
    "switch continues after highest sent, timestamp gap from wall clock": [
        ((1, 500, 9000, 0.00), (1000, 50_000)),
        ((1, 501, 9960, 0.02), (1001, 50_960)),
        ((2, 7000, 123, 0.52), (1002, 50_960 + 24_000)),
        ((2, 7001, 1083, 0.54), (1003, 50_960 + 24_960)),
    ],
    "back-to-back switch uses the minimum 20 ms step": [
        ((1, 500, 9000, 0.00), (1000, 50_000)),
        ((2, 10, 0, 0.00), (1001, 50_960)),
    ],
    "pre-switch packets dropped; switching back is a new switch": [
        ((1, 500, 9000, 0.00), (1000, 50_000)),
        ((2, 10, 0, 0.02), (1001, 50_960)),
        ((2, 9, 0, 0.03), None),  # sent before the switch: its number is taken
        ((1, 501, 9960, 0.04), (1002, 51_920)),
        ((1, 499, 8040, 0.05), None),
        ((1, 502, 10920, 0.06), (1003, 52_880)),
    ],
}


@pytest.mark.parametrize("name", CASES)
def test_rewrite_table(name: str) -> None:
    r = rewriter(*((65535, 4_294_967_295) if "outgoing" in name else ()))
    for (ssrc, seq, ts, arrival), expected in CASES[name]:
        got = r.rewrite(ssrc, seq, ts, arrival)
        want = None if expected is None else Rewritten(OUT_SSRC, *expected)
        assert got == want, (name, seq, got, want)
