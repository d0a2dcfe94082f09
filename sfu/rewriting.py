"""RTP header rewriting for forwarded packets (pure: no I/O, arrival time is passed in).

A subscriber's sender is one continuous RTP stream (one SSRC, gapless sequence numbers,
monotonic timestamps) even when the SFU switches which publisher feeds it, e.g. an
active-speaker slot changing from one pupil to another. Browsers drop or mis-decode a
stream whose sequence numbers jump or whose timestamps go backwards, so every forwarded
packet goes through a :class:`SequenceRewriter`.
"""

from __future__ import annotations

import secrets

import attrs

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
#: Timestamp step assumed for the first packet after a switch when packets arrive back to
#: back (20 ms of 48 kHz Opus); larger gaps use the wall-clock time since the last packet.
MIN_SWITCH_GAP_SECONDS = 0.02
#: A source older than this many packets behind the newest is a late straggler, not a wrap.
REORDER_WINDOW = 1 << 15


@attrs.frozen
class Rewritten:
    ssrc: int
    sequence_number: int
    timestamp: int


def _seq_diff(a: int, b: int) -> int:
    """Signed distance a - b in 16-bit serial-number arithmetic (RFC 1982)."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= REORDER_WINDOW else d


@attrs.define
class SequenceRewriter:
    """Maps packets of possibly switching sources onto one continuous outgoing stream.

    Within a source, the outgoing sequence number and timestamp are the incoming ones plus
    a fixed offset, so reordering and gaps (losses) are preserved for the subscriber's NACK
    logic. On a switch the new source continues right after the highest number sent so far,
    with a timestamp gap matching the wall-clock time since the last packet. Packets of an
    earlier source, or of the current source from before the switch, are dropped: they would
    reuse sequence numbers already sent.
    """

    ssrc: int
    clock_rate: int
    _next_seq: int
    _next_ts: int
    _source: int | None = None
    _first_seq: int = 0
    _seq_offset: int = 0
    _ts_offset: int = 0
    _max_seq: int | None = None
    _max_ts: int = 0
    _last_arrival: float = 0.0

    @classmethod
    def starting(cls, ssrc: int, clock_rate: int) -> SequenceRewriter:
        """A stream that starts where aiortc's own sender would: at random, in the low half of
        the sequence space (early wraparound breaks SRTP in some stacks)."""
        return cls(
            ssrc=ssrc,
            clock_rate=clock_rate,
            next_seq=secrets.randbelow(SEQ_MOD // 2),
            next_ts=secrets.randbelow(TS_MOD),
        )

    def rewrite(
        self, ssrc: int, sequence_number: int, timestamp: int, arrival: float
    ) -> Rewritten | None:
        """The outgoing header for this packet, or None if it must be dropped."""
        if ssrc != self._source:
            self._switch(ssrc, sequence_number, timestamp, arrival)
        elif _seq_diff(sequence_number, self._first_seq) < 0:
            return None
        out_seq = (sequence_number + self._seq_offset) % SEQ_MOD
        out_ts = (timestamp + self._ts_offset) % TS_MOD
        if self._max_seq is None or _seq_diff(out_seq, self._max_seq) > 0:
            self._max_seq = out_seq
            self._max_ts = out_ts
            self._last_arrival = arrival
        return Rewritten(self.ssrc, out_seq, out_ts)

    def _switch(self, ssrc: int, sequence_number: int, timestamp: int, arrival: float) -> None:
        if self._max_seq is None:
            out_seq, out_ts = self._next_seq, self._next_ts
        else:
            gap = max(arrival - self._last_arrival, MIN_SWITCH_GAP_SECONDS)
            out_seq = (self._max_seq + 1) % SEQ_MOD
            out_ts = (self._max_ts + max(1, round(gap * self.clock_rate))) % TS_MOD
        self._source = ssrc
        self._first_seq = sequence_number
        self._seq_offset = (out_seq - sequence_number) % SEQ_MOD
        self._ts_offset = (out_ts - timestamp) % TS_MOD
