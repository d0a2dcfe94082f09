"""What time it is: the one clock every part of the platform asks.

No code outside this module reads the wall clock (`time.time()`, `datetime.now()`,
`date.today()`): whatever needs the date or the time of day (a diary's week, a digest, an
iCalendar stamp, a code's expiry, an age, quiet hours, a token's lifetime) is handed a `Clock`.
Processes run on `SYSTEM_CLOCK`; the Synapse module reads Synapse's own clock, so that its
expiries agree with the registration tokens Synapse checks; tests pin a clock with
`Clock.fixed` or move one with `ManualClock`, and then no test depends on the day it runs.

Durations (timeouts, lags, retry delays) are not dates: they are measured on `time.monotonic`,
which neither a clock change nor a moved clock disturbs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo


class Clock:
    """The time now, read from `read` (seconds since the epoch), in the forms callers need."""

    def __init__(self, read: Callable[[], float] = time.time):
        self._read = read

    @classmethod
    def fixed(cls, moment: datetime) -> Clock:
        """A clock that always says `moment` (which must carry its time zone)."""
        at = _timestamp(moment)
        return cls(lambda: at)

    def seconds(self) -> float:
        """Seconds since the epoch, as `time.time()` gives them."""
        return self._read()

    def ms(self) -> int:
        """Milliseconds since the epoch, as Matrix timestamps are written."""
        return int(self._read() * 1000)

    def now(self, zone: tzinfo = UTC) -> datetime:
        """The moment now, in `zone`."""
        return datetime.fromtimestamp(self._read(), zone)

    def today(self, zone: tzinfo) -> date:
        """The date now where `zone` is: a school's day starts at its own midnight, not UTC's."""
        return self.now(zone).date()


class ManualClock(Clock):
    """A clock that stands still until it is set or moved: for tests and benchmarks."""

    def __init__(self, moment: datetime):
        self._at = _timestamp(moment)
        super().__init__(lambda: self._at)

    def set(self, moment: datetime) -> None:
        self._at = _timestamp(moment)

    def advance(self, seconds: float) -> None:
        self._at += seconds


def _timestamp(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone: say which one it is in")
    return moment.timestamp()


#: The real clock, for processes (the bridge, the SFU, sferumctl). Moved as a whole, with every
#: other clock of the process, by libfaketime (`scripts/test --at`).
SYSTEM_CLOCK = Clock()
